"""The atheris drivers of `make fuzz` run: a few hundred inputs per target, no crash."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fuzz.targets import TARGETS
from tests.prereq import needs

ROOT = Path(__file__).resolve().parents[2]
# Cheap targets only here; the file-heavy ones (patch, index, journal) get their time in `make fuzz`.
CHEAP = ["manifest", "ranges", "bencode", "export", "auth", "receipt"]


@needs(importlib.util.find_spec("atheris") is None, "atheris not installed")
def test_drivers_run(tmp_path: Path) -> None:
    assert set(CHEAP) <= set(TARGETS)

    def one(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                f"fuzz.fuzz_{name}",
                "-runs=300",
                f"-artifact_prefix={tmp_path}/",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    with ThreadPoolExecutor(2) as pool:
        for name, proc in zip(CHEAP, pool.map(one, CHEAP), strict=True):
            assert proc.returncode == 0, (name, proc.stderr[-2000:])
            assert "Done 300 runs" in proc.stderr, (name, proc.stderr[-500:])


def test_every_driver_exists() -> None:
    for name in TARGETS:
        assert (ROOT / "fuzz" / f"fuzz_{name}.py").exists(), name
