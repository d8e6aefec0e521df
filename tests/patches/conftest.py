"""Helpers for the patch tests: synthetic archives and a cache of real releases."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from tests.prereq import missing

# The venv made by uv has no pip: fall back to the system one.
PIP = (
    [sys.executable, "-m", "pip"]
    if importlib.util.find_spec("pip")
    else [shutil.which("python3") or "python3", "-m", "pip"]
)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "webseed-tests" / "patches"


def text_blob(seed: int, n: int) -> bytes:
    """Compressible, source-code-like bytes, different per seed."""
    rnd = random.Random(seed)
    words = [
        b"def",
        b"return",
        b"self",
        b"import",
        b"value",
        b"(",
        b")",
        b":",
        b"\n    ",
        b"x",
        b"+",
    ]
    return b" ".join(rnd.choice(words) + str(rnd.randrange(1000)).encode() for _ in range(n // 6))[
        :n
    ]


def mutate(data: bytes, seed: int, edits: int = 5) -> bytes:
    """A point release: a few small edits."""
    rnd = random.Random(seed)
    out = bytearray(data)
    for _ in range(edits):
        p = rnd.randrange(max(1, len(out) - 20))
        out[p : p + 8] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 16)))
    return bytes(out)


def _fetch(cmd: list[str], dest: Path, name_glob: str) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(name_glob))
    if len(found) >= 2:
        return found
    try:
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"offline or tool missing, cannot fetch real releases: {exc}")
    found = sorted(dest.glob(name_glob))
    if len(found) < 2:
        missing(f"could not fetch two versions matching {name_glob}")
    return found


def pip_pair(spec_a: str, spec_b: str, binary: bool, glob: str) -> tuple[Path, Path]:
    """Two releases from PyPI (wheel or sdist), cached across runs."""
    flag = "--only-binary=:all:" if binary else "--no-binary=:all:"
    dest = CACHE / ("wheels" if binary else "sdists")
    found = sorted(dest.glob(glob)) if dest.exists() else []
    if len(found) < 2:
        dest.mkdir(parents=True, exist_ok=True)
        for spec in (spec_a, spec_b):
            try:
                subprocess.run(
                    [*PIP, "download", "-q", "--no-deps", flag, "-d", str(dest), spec],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                missing(f"offline or pip missing, cannot fetch real releases: {exc}")
        found = sorted(dest.glob(glob))
    if len(found) < 2:
        missing(f"could not fetch two versions matching {glob}")
    return found[0], found[1]


def apt_pair(package: str) -> tuple[Path, Path]:
    """Two versions of a Debian package available to apt (e.g. bookworm and -security)."""
    if shutil.which("apt-cache") is None:
        missing("apt-cache not available")
    dest = CACHE / "debs"
    found = sorted(dest.glob(f"{package}_*.deb")) if dest.exists() else []
    if len(found) >= 2:
        return found[0], found[1]
    out = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True)
    versions = sorted(
        {line.split("|")[1].strip() for line in out.stdout.splitlines() if "|" in line}
    )
    if len(versions) < 2:
        missing(f"only {len(versions)} version of {package} available via apt")
    _fetch(
        ["apt-get", "download", "-q", *(f"{package}={v}" for v in versions[:2])],
        dest,
        f"{package}_*.deb",
    )
    found = sorted(dest.glob(f"{package}_*.deb"))
    return found[0], found[1]
