"""Small helpers shared by the benchmarks: timing, peak RSS, tables, JSON results."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CACHE = Path(__file__).parent / "cache"


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_timed(cmd: list[str], **kwargs: Any) -> tuple[float, int, str]:
    """Run ``cmd``; return (seconds, peak RSS of that process in bytes, stdout+stderr).

    Peak RSS is the kernel's high-water mark (VmHWM) of the exec'd image, sampled
    every 10 ms (rusage would include the forked parent's memory before exec).
    """
    peak = 0
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        while proc.poll() is None:
            peak = max(peak, _hwm(proc.pid))
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {text[-500:]}")
    return elapsed, peak, text


def precompile() -> None:
    """Byte-compile the project as an install does, so a timed CLI run measures the
    program, not the compiling of its sources (PYTHONDONTWRITEBYTECODE may be set)."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for pkg in ("webseed", "peer", "geo", "patches"):
        compileall.compile_dir(root / pkg, quiet=1, workers=0)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/NAME.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        **data,
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table (works in CI logs without a terminal)."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
