"""Simulator targets (issue 6): the real scheduler in a simulated swarm.

1. Flash crowd: 1,000 heterogeneous peers, one seed, 1 GiB: mean completion vs
   the Kumar-Ross bound (target ≤ 1.2×), origin share (target < 5%).
2. 10% malicious (900 honest + 100 serving corrupt chunks) vs the clean run of
   the same 900 peers: zero corrupt accepted, every malicious peer that served
   data banned, mean completion within 1.5× of clean.
3. Scale: 10,000 peers × 1 GiB, wall time (target < 2 min on 2 cores).

The "real tool" to compare with is the fluid bound itself: no schedule can beat
it. Plots (completion CDF, origin share over time) go to bench/results/.
Arguments: ``--quick`` runs a tenth of the sizes (for a smoke test).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench._util import RESULTS, write_results
from peer.simulate.cli import run
from peer.simulate.report import Report, plot
from peer.simulate.scenarios import GIB, MIB

KEYS = (
    "peers",
    "chunk_size",
    "completed",
    "mean_completion_s",
    "max_completion_s",
    "kumar_ross_bound_s",
    "bound_ratio",
    "max_bound_ratio",
    "origin_share",
    "corrupt_received",
    "corrupt_accepted",
    "banned",
    "honest_banned",
    "malicious_served",
    "malicious_banned",
    "sim_time_s",
    "wall_s",
    "cpu_s",
    "scheduler_events",
)


def _row(label: str, r: Report) -> dict[str, Any]:
    out: dict[str, Any] = {"run": label}
    full = r.to_json(series=False)
    out.update({k: full[k] for k in KEYS})
    return out


def _one(job: tuple[str, str, int, int]) -> tuple[str, Report]:
    label, scenario, peers, chunk = job
    return label, run(scenario, peers, GIB, 1, chunk)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    scale = 10 if quick else 1
    n = 1000 // scale
    bad = round(n * 0.1)
    jobs = [
        (f"flash-crowd {n}", "flash-crowd", n, 16 * MIB),
        (f"malicious-10 {n}", "malicious-10", n, 16 * MIB),
        (f"clean {n - bad} (same honest peers)", "flash-crowd", n - bad, 16 * MIB),
        (f"flash-crowd {10 * n}", "flash-crowd", 10 * n, 64 * MIB),
    ]
    # Independent runs, one process each: wall time per run is inflated when they
    # share cores (and other work), so each run's CPU seconds are reported too.
    workers = int(os.environ.get("SIM_WORKERS", len(jobs)))
    print(f"running {len(jobs)} simulations on {workers} processes ...", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = dict(pool.map(_one, jobs))
    reports: dict[str, Report] = {label: done[label] for label, *_ in jobs}
    runs = [_row(label, r) for label, r in reports.items()]
    fc, bad_run, clean, big = (reports[j[0]] for j in jobs)
    for label in (runs[0]["run"], runs[1]["run"]):
        plot(reports[label], RESULTS)

    targets = {
        "flash_crowd_mean_over_bound": fc.bound_ratio,
        "flash_crowd_mean_over_bound_ok": fc.bound_ratio <= 1.2,
        "flash_crowd_origin_share": fc.origin_share,
        "flash_crowd_origin_share_ok": fc.origin_share < 0.05,
        "malicious_corrupt_accepted": bad_run.corrupt_accepted,
        "malicious_served": bad_run.malicious_served,
        "malicious_banned": bad_run.malicious_banned,
        "malicious_all_servers_banned": bad_run.malicious_banned == bad_run.malicious_served,
        "malicious_honest_banned": bad_run.honest_banned,
        "malicious_vs_clean_mean": bad_run.mean_completion_s / clean.mean_completion_s,
        "malicious_vs_clean_ok": bad_run.mean_completion_s <= 1.5 * clean.mean_completion_s,
        "scale_peers": big.peers,
        "scale_wall_s": big.wall_s,
        "scale_cpu_s": big.cpu_s,
        "scale_wall_ok": big.wall_s < 120,
        "scale_cpu_ok": big.cpu_s < 120,
    }
    head = (
        "run",
        "peers",
        "chunk MiB",
        "mean s",
        "max s",
        "bound s",
        "mean/bound",
        "origin %",
        "corrupt acc",
        "banned",
        "wall s",
        "CPU s",
    )
    print("\n" + " | ".join(head))
    for row in runs:
        print(
            " | ".join(
                [
                    row["run"],
                    str(row["peers"]),
                    str(row["chunk_size"] // MIB),
                    f"{row['mean_completion_s']:.1f}",
                    f"{row['max_completion_s']:.1f}",
                    f"{row['kumar_ross_bound_s']:.1f}",
                    f"{row['bound_ratio']:.3f}",
                    f"{100 * row['origin_share']:.2f}",
                    str(row["corrupt_accepted"]),
                    f"{row['banned']} ({row['malicious_served']} served)",
                    f"{row['wall_s']:.1f}",
                    f"{row['cpu_s']:.1f}",
                ]
            )
        )
    for k, v in targets.items():
        print(f"{k}: {v}")
    path = write_results("simulate", {"quick": quick, "runs": runs, "targets": targets})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
