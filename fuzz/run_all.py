"""Run every atheris target for a bounded time and write ``bench/results/fuzz.json``.

    .venv/bin/python -m fuzz.run_all [--seconds 30] [--only manifest,patch]

Each target runs in its own process (``python -m fuzz.fuzz_<name>``); the
number of inputs libFuzzer tried and whether it crashed are collected. If
atheris cannot be imported here, the hypothesis property tests of
``tests/fuzz`` run instead with their example budgets scaled up, so
``make fuzz`` still fuzzes for a bounded time. Exit status 1 if any target crashed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CRASHES = ROOT / "bench" / "cache" / "fuzz-crashes"


def run_target(name: str, seconds: int) -> dict[str, object]:
    """Fuzz one target for ``seconds``; its runs, crash flag and wall time."""
    CRASHES.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            f"fuzz.fuzz_{name}",
            f"-max_total_time={seconds}",
            f"-artifact_prefix={CRASHES}/{name}-",
            "-print_final_stats=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 300,
    )
    out = proc.stdout + proc.stderr
    runs = re.findall(r"Done (\d+) runs", out) or re.findall(
        r"stat::number_of_executed_units:\s*(\d+)", out
    )
    crashed = proc.returncode != 0
    return {
        "target": name,
        "runs": int(runs[-1]) if runs else 0,
        "seconds": round(time.monotonic() - start, 1),
        "crashed": crashed,
        "tail": out[-2000:] if crashed else "",
    }


def hypothesis_fallback(seconds: int) -> dict[str, object]:
    """No atheris: the property tests with example budgets scaled to roughly ``seconds`` each."""
    env = dict(os.environ, FUZZ_SCALE=str(max(1, seconds // 2)))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz"],
        cwd=ROOT,
        env=env,
        timeout=seconds * 60 + 600,
    )
    return {
        "engine": "hypothesis",
        "scale": env["FUZZ_SCALE"],
        "ok": proc.returncode == 0,
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "30")))
    ap.add_argument("--only", default="", help="comma-separated target names")
    args = ap.parse_args(argv)
    names = [n for n in TARGETS if not args.only or n in args.only.split(",")]
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: running the hypothesis targets longer instead")
        result = hypothesis_fallback(args.seconds)
        _write({"engine": "hypothesis", "fallback": result})
        return 0 if result["ok"] else 1
    rows = []
    for name in names:
        row = run_target(name, args.seconds)
        rows.append(row)
        flag = "CRASH" if row["crashed"] else "ok"
        print(f"{name:<14} {row['runs']:>10} inputs  {row['seconds']:>6}s  {flag}", flush=True)
        if row["crashed"]:
            print(row["tail"])
    total = sum(int(r["runs"]) for r in rows)  # type: ignore[call-overload]
    print(f"{'total':<14} {total:>10} inputs, {sum(bool(r['crashed']) for r in rows)} crashes")
    _write(
        {
            "engine": "atheris",
            "seconds_per_target": args.seconds,
            "targets": rows,
            "total_inputs": total,
            "crashes": sum(bool(r["crashed"]) for r in rows),
        }
    )
    return 1 if any(r["crashed"] for r in rows) else 0


def _write(data: dict[str, object]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (RESULTS / "fuzz.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
