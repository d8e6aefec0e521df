"""Simulator targets (issue 6): the real scheduler in a simulated swarm.

1. Flash crowd: 1,000 heterogeneous peers, one seed, 1 GiB: mean completion vs
   the Kumar-Ross bound (target ≤ 1.2×), origin share (target < 5%).
2. 10% malicious (900 honest + 100 serving corrupt chunks) vs the clean run of
   the same 900 peers: zero corrupt accepted, every malicious peer that served
   data banned, mean completion within 1.5× of clean.
3. Scale: 10,000 peers × 1 GiB, wall time (target < 2 min on 2 cores), run on
   the mypyc build of the same scheduler and simulator (``--native``, see
   peer/simulate/native.py); ``--interpreted-scale`` runs it interpreted too.

The "real tool" to compare with is the fluid bound itself: no schedule can beat
it. Plots (completion CDF, origin share over time) go to bench/results/.
Arguments: ``--quick`` runs a tenth of the sizes (for a smoke test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
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


def _one(job: tuple[str, str, int, int, bool]) -> tuple[str, Report]:
    label, scenario, peers, chunk, compiled = job
    if not compiled:
        return label, run(scenario, peers, GIB, 1, chunk)
    # The compiled build runs in its own process (it must be first on sys.path).
    cmd = [sys.executable, "-m", "peer.simulate", "--scenario", scenario, "--native", "--json"]
    cmd += ["--peers", str(peers), "--size", str(GIB), "--chunk-size", str(chunk), "--seed", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=3600)
    data = json.loads(out.stdout)
    known = {f.name for f in fields(Report)}
    return label, Report(**{k: v for k, v in data.items() if k in known})


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    scale = 10 if quick else 1
    n = 1000 // scale
    bad = round(n * 0.1)
    jobs = [
        (f"flash-crowd {n}", "flash-crowd", n, 16 * MIB, False),
        (f"malicious-10 {n}", "malicious-10", n, 16 * MIB, False),
        (f"clean {n - bad} (same honest peers)", "flash-crowd", n - bad, 16 * MIB, False),
        (f"flash-crowd {10 * n} (native build)", "flash-crowd", 10 * n, 64 * MIB, True),
    ]
    if "--interpreted-scale" in argv:
        jobs.append((f"flash-crowd {10 * n} (interpreted)", "flash-crowd", 10 * n, 64 * MIB, False))
    # The 1,000-peer runs side by side, one process each (their wall time is inflated
    # by sharing cores, so each run's CPU seconds are reported too); then the scale
    # runs one at a time, so their wall time is their own.
    small, scale = jobs[:3], jobs[3:]
    workers = int(os.environ.get("SIM_WORKERS", len(small)))
    print(f"running {len(small)} simulations on {workers} processes ...", flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = dict(pool.map(_one, small))
    for job in scale:
        print(f"running {job[0]} alone ...", flush=True)
        done.update([_one(job)])
    reports: dict[str, Report] = {label: done[label] for label, *_ in jobs}
    runs = [_row(label, r) for label, r in reports.items()]
    fc, bad_run, clean, big = (reports[j[0]] for j in jobs[:4])
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
        "scale_native": big.native,
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
