"""Seeding incentives in the behaviour model: retention and download times, with vs without.

Runs ``peer.incentives.behaviour`` (the ``seeding-incentives`` scenario) for
several seeds, with incentives (the real ``SlotPolicy``) and without (equal
sharing) on the same population, plus two ablations of the policy: the
server's default optimistic share (20 % instead of 5 %) and PropShare
weighted by gross instead of net contribution. Writes
``bench/results/incentives.json`` and ``bench/results/incentives.png``
(retention over time with vs without; download-time CDF, contributors vs free
riders). There is no third-party tool to compare with: the baseline is the
same population without incentives, in the same run. (In this model every
downloader uploads while downloading, so the debtor rule, which only hits
identities that never uploaded, does not fire; ``whitewash`` is kept for that.)

    .venv/bin/python -m bench.incentives [--seeds 1,2,3] [--robust 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

from bench._util import RESULTS, table, write_results
from peer.incentives.behaviour import DAY, HOUR, Outcome, Params, simulate

KEYS = ("retention_1d", "retention_7d", "speedup", "free_rider_completed", "origin_share")


def _row(o: Outcome) -> dict[str, float]:
    return {
        "retention_1d": o.retention_1d,
        "retention_7d": o.retention_7d,
        "speedup": o.speedup,
        "contributor_mean_h": o.contributor_mean_s / HOUR,
        "free_rider_mean_h": o.free_rider_mean_s / HOUR,
        "free_rider_completed": o.free_rider_completed,
        "origin_share": o.origin_share,
        "contributor_downloads": o.contributor_downloads,
        "free_rider_downloads": o.free_rider_downloads,
    }


def plot(on: Outcome, off: Outcome, seed: int, path: Any) -> None:
    """Seeders over time (with vs without) and download-time CDFs (contributors vs free riders)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for o, label in ((on, "with incentives"), (off, "without")):
        a.plot([t for t, _ in o.timeline], [f for _, f in o.timeline], label=label)
    a.set_xlabel("virtual time (days); a release every day for 10 days")
    a.set_ylabel("fraction of users seeding (any release)")
    a.set_title("Seeders over time")
    a.legend()
    for times, label in (
        (on.contributor_times, "contributors (with)"),
        (on.free_rider_times, "free riders (with)"),
        (off.contributor_times + off.free_rider_times, "everyone (without)"),
    ):
        xs = sorted(t / HOUR for t in times)
        b.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label)
    b.set_xscale("log")
    b.set_xlabel("download time of a 1000 MB release (hours, log)")
    b.set_ylabel("CDF")
    b.set_title(f"Download time (seed {seed}), speed-up {on.speedup:.2f}x")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--robust", type=int, default=10, help="seeds for the robustness summary")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = Params()
    variants = {
        "policy": base,
        "optimistic-0.2": replace(base, optimistic_share=0.2),
        "gross-credit": replace(base, credit="gross"),
    }
    t0 = time.perf_counter()
    runs: dict[str, Any] = {}
    first: tuple[Outcome, Outcome] | None = None
    rows = []
    for seed in seeds:
        on = simulate(base, incentives=True, seed=seed)
        off = simulate(base, incentives=False, seed=seed)
        first = first or (on, off)
        runs[str(seed)] = {"with": _row(on), "without": _row(off)}
        rows.append(
            [
                seed,
                f"{on.retention_1d:.3f} / {off.retention_1d:.3f}",
                f"{on.retention_7d:.3f} / {off.retention_7d:.3f}",
                f"{on.speedup:.2f} / {off.speedup:.2f}",
                f"{on.contributor_mean_s / HOUR:.2f} h / {on.free_rider_mean_s / HOUR:.2f} h",
                f"{on.free_rider_completed:.2f}",
                f"{on.origin_share:.3f} / {off.origin_share:.3f}",
            ]
        )
    print(
        table(
            [
                "seed",
                "retention 1d with/without",
                "retention 7d",
                "speed-up with/without",
                "contrib / free-rider mean",
                "FR completed",
                "origin share",
            ],
            rows,
        )
    )
    robust: dict[str, Any] = {}
    for name, params in variants.items():
        sp = [simulate(params, incentives=True, seed=s).speedup for s in range(1, args.robust + 1)]
        robust[name] = {
            "speedups": sp,
            "min": min(sp),
            "mean": statistics.fmean(sp),
            "at_least_2": sum(x >= 2.0 for x in sp),
        }
    print(
        table(
            ["policy variant", f"speed-up over seeds 1..{args.robust}: min", "mean", ">= 2x"],
            [
                [n, f"{r['min']:.2f}", f"{r['mean']:.2f}", f"{r['at_least_2']}/{args.robust}"]
                for n, r in robust.items()
            ],
        )
    )
    assert first is not None
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(first[0], first[1], seeds[0], RESULTS / "incentives.png")
    out = write_results(
        "incentives",
        {
            "command": "python -m bench.incentives",
            "params": {k: v for k, v in vars(base).items()},
            "seeds": runs,
            "robustness": robust,
            "seconds": time.perf_counter() - t0,
            "day": DAY,
        },
    )
    print(f"wrote {out} and {RESULTS / 'incentives.png'} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
