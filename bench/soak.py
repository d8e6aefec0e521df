"""Soak: the long reliability runs, with figures for docs/reliability.md.

1. load: ``bench.load`` (500 clients, webseed vs nginx, over capacity) for
   ``--load-seconds`` per run -> ``bench/results/load.json``;
2. faults: ``kill -9`` of ``webseed get`` at ``--kills`` random moments, each
   re-run checked (needs the swarm engine; skipped with the reason otherwise),
   plus the fault tests of ``tests/reliability`` (disk full, clock skew,
   slow-loris, bombs, peer killed) -> ``bench/results/faults.json``;
3. fuzz: every atheris target for ``--fuzz-seconds`` (``fuzz.run_all``) and the
   hypothesis properties with 20x their ``make test`` budget -> ``bench/results/fuzz.json``.

The figures are written between the markers of docs/reliability.md.

    .venv/bin/python -m bench.soak [--load-seconds 30] [--kills 20] [--fuzz-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench._util import RESULTS, write_results

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def run_faults(kills: int) -> dict[str, Any]:
    """The kill -9 cycles (if `webseed get` exists) and the fault tests; the results."""
    from tests.reliability import faults

    out: dict[str, Any] = {}
    if faults.available():
        with tempfile.TemporaryDirectory(prefix="webseed-soak-") as tmp:
            pub = faults.Published(Path(tmp), 64 * 1024 * 1024)
            with faults.Peer(pub.repo, rate="16M") as peer:
                out["kill_resume"] = faults.kill_resume(
                    pub, peer.url, Path(tmp), cycles=kills, window=4.0, seed=int(time.time())
                )
            try:
                out["partition"] = faults.partition_mid_transfer(pub, Path(tmp), cut_for=5.0)
            except OSError as exc:
                out["partition"] = {"skipped": f"no network namespace: {exc}"}
    else:
        out["kill_resume"] = {"skipped": "needs `webseed get` (pending: swarm)"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/reliability",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    out["fault_tests"] = {
        "passed": int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0,
        "failed": int(m.group(1)) if (m := re.search(r"(\d+) failed", summary)) else 0,
        "skipped": int(m.group(1)) if (m := re.search(r"(\d+) skipped", summary)) else 0,
        "summary": summary,
    }
    return out


def run_fuzz(seconds: int) -> dict[str, Any]:
    """atheris for ``seconds`` per target, then the hypothesis properties at 20x budget."""
    subprocess.run(
        [sys.executable, "-m", "fuzz.run_all", "--seconds", str(seconds)],
        cwd=ROOT,
        timeout=seconds * 40 + 900,
    )
    fuzz = json.loads((RESULTS / "fuzz.json").read_text())
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"],
        cwd=ROOT,
        env=dict(os.environ, FUZZ_SCALE="20"),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    fuzz["hypothesis"] = {
        "scale": 20,
        "ok": proc.returncode == 0,
        "seconds": round(time.monotonic() - start, 1),
        "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
    }
    (RESULTS / "fuzz.json").write_text(json.dumps(fuzz, indent=2) + "\n")
    return fuzz


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


LOAD_COLS = [
    ("server", "server"),
    ("generator", "generator"),
    ("clients", "clients"),
    ("req/s", "requests_per_s"),
    ("served MB/s", "served_MBps"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("peak RSS MiB", "peak_rss_MiB"),
    ("served", "served"),
    ("503", "refused_503"),
    ("with Retry-After", "retry_after"),
    ("socket errors", "socket_errors"),
    ("alive after", "alive"),
]


def figures(load_res: dict[str, Any], faults_res: dict[str, Any], fuzz_res: dict[str, Any]) -> str:
    """The Markdown block of measured figures."""
    day = time.strftime("%Y-%m-%d")
    lines = [f"Measured by `make soak` on {day} ({os.cpu_count()} CPUs, loopback).", ""]
    if load_res:
        oc = load_res["over_capacity"]
        lines += [
            f"**Load**: {load_res['clients']} concurrent clients, {load_res['seconds']:g} s per "
            "run, each asking again and again for a 64 KiB range of a 16 MiB artifact.",
            "",
            _row([name for name, _ in LOAD_COLS]),
            _row(["---"] * len(LOAD_COLS)),
            *[_row([r[key] for _, key in LOAD_COLS]) for r in load_res["runs"]],
            "",
            f"Over capacity: every 503 carried Retry-After: {oc['all_503_have_retry_after']}. "
            "Served goodput compared with exactly `slots` clients: "
            f"{oc['goodput_vs_at_capacity_ignoring_retry_after']:.0%} when 500 clients ignore "
            f"Retry-After, {oc['goodput_vs_at_capacity_honouring_retry_after']:.0%} when they "
            "honour it.",
            "",
        ]
    kr = faults_res.get("kill_resume", {})
    if "skipped" in kr:
        lines += [f"**kill -9 / resume**: skipped ({kr['skipped']}).", ""]
    elif kr:
        lines += [
            f"**kill -9 / resume**: {kr['cycles']} kills of `webseed get` "
            f"({kr['size'] >> 20} MiB, {kr['chunk_size'] >> 10} KiB chunks); correct file after "
            f"every re-run: {kr['all_correct']}; re-runs fetched only the chunks not verified at "
            f"the kill: {kr['all_within_refetch_bound']}; "
            f"data lost: {kr['data_lost_bytes']} bytes.",
            "",
        ]
    part = faults_res.get("partition", {})
    if "skipped" in part:
        lines += [f"**Network partition**: skipped ({part['skipped']}).", ""]
    elif part:
        lines += [
            f"**Network partition**: the peer's link cut for {part['cut_for_s']:g} s "
            f"mid-transfer, then healed: completed correctly: {part['ok']}; bytes by source: "
            f"{part['bytes_by_source']}.",
            "",
        ]
    ft = faults_res.get("fault_tests", {})
    if ft:
        lines += [f"**Fault tests** (`tests/reliability`): {ft['summary']}.", ""]
    if fuzz_res.get("engine") == "atheris":
        lines += [
            f"**Fuzzing**: {fuzz_res['total_inputs']:,} inputs over {len(fuzz_res['targets'])} "
            f"atheris targets ({fuzz_res['seconds_per_target']} s each), "
            f"crashes: {fuzz_res['crashes']}.",
            "",
            _row(["target", "inputs", "crashed"]),
            _row(["---"] * 3),
            *[_row([t["target"], f"{t['runs']:,}", t["crashed"]]) for t in fuzz_res["targets"]],
            "",
        ]
    hyp = fuzz_res.get("hypothesis")
    if hyp:
        lines += [f"Hypothesis properties at {hyp['scale']}x budget: {hyp['summary']}.", ""]
    lost = faults_res.get("kill_resume", {}).get("data_lost_bytes", 0)
    lines.append(f"**Data lost: {lost} bytes.**")
    return "\n".join(lines)


def write_doc(block: str) -> None:
    """Replace the figures between the markers of docs/reliability.md."""
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + block + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--load-seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--fuzz-seconds", type=int, default=60)
    ap.add_argument("--skip", default="", help="comma-separated: load,faults,fuzz")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(",")) - {""}
    load_res: dict[str, Any] = {}
    if "load" not in skip:
        load_res = load.run(args.clients, args.load_seconds, 32)
        write_results("load", load_res)
        print("load:", json.dumps(load_res["over_capacity"]), flush=True)
    faults_res: dict[str, Any] = {}
    if "faults" not in skip:
        faults_res = run_faults(args.kills)
        write_results("faults", faults_res)
        print(
            "faults:",
            json.dumps({k: v for k, v in faults_res.items() if k != "kill_resume"}),
            flush=True,
        )
    fuzz_res: dict[str, Any] = {}
    if "fuzz" not in skip:
        fuzz_res = run_fuzz(args.fuzz_seconds)
    # Sections skipped this time keep their last measured figures.
    if not load_res and (RESULTS / "load.json").exists():
        load_res = json.loads((RESULTS / "load.json").read_text())
    if not faults_res and (RESULTS / "faults.json").exists():
        faults_res = json.loads((RESULTS / "faults.json").read_text())
    if not fuzz_res and (RESULTS / "fuzz.json").exists():
        fuzz_res = json.loads((RESULTS / "fuzz.json").read_text())
    block = figures(load_res, faults_res, fuzz_res)
    print(block)
    write_doc(block)
    bad = (
        (load_res and not all(r["alive"] and r["answers_after"] for r in load_res["runs"]))
        or faults_res.get("fault_tests", {}).get("failed")
        or faults_res.get("kill_resume", {}).get("data_lost_bytes")
        or fuzz_res.get("crashes")
        or (fuzz_res.get("hypothesis") and not fuzz_res["hypothesis"]["ok"])
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
