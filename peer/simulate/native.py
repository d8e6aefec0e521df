"""The simulator compiled: the same scheduler and simulator source, built to C by mypyc.

mypyc (part of mypy) compiles type-annotated Python modules into C extension
modules. The scheduler is written for ``mypy --strict`` and compiles as it
stands, so the compiled build runs the very code the engine runs, about three
times faster, and a seeded run gives the same report either way (tested).

Nothing depends on the build: it is made on demand (``python -m peer.simulate
--native``) into a cache directory named after the digest of every source file
of ``peer/`` and the Python and mypy versions, so an edited source never meets a
stale build, and only the simulator process that asked for it puts it first on
its ``sys.path``. Building needs a C compiler and the dev dependencies (mypy,
setuptools); it takes about 40 s of CPU once per source change.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from webseed.errors import WebseedError

#: The modules compiled: the scheduler and the simulator's hot loop. The rest
#: (scenarios, reports, the CLI) stays interpreted; it runs once per simulation.
MODULES = (
    "peer/scheduler/actions.py",
    "peer/scheduler/config.py",
    "peer/scheduler/core.py",
    "peer/scheduler/estimate.py",
    "peer/scheduler/events.py",
    "peer/simulate/loop.py",
    "peer/simulate/network.py",
    "peer/simulate/swarm.py",
    "peer/simulate/upload.py",
)

#: Set in the environment of a process re-started on the compiled build.
ENV_FLAG = "WEBSEED_SIM_NATIVE"

#: A build may take this long at most (2 cores, gcc -O3 on ~1 MB of generated C).
BUILD_TIMEOUT = 900

#: Builds of other sources kept in the cache (the newest; each is ~10 MB).
KEEP_BUILDS = 3


class NativeBuildError(WebseedError):
    """The compiled build could not be made (no compiler, no mypyc, a compile error)."""


def _package_root() -> Path:
    """The directory holding the ``peer`` package these sources come from."""
    return Path(__file__).resolve().parent.parent.parent


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/webseed/native`` (``~/.cache/webseed/native``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "webseed" / "native"


def source_digest(root: Path | None = None) -> str:
    """Digest of every ``.py`` under ``peer/`` plus the Python and mypy versions."""
    root = root or _package_root()
    h = hashlib.sha256()
    h.update(sys.version.encode())
    try:
        from mypy.version import __version__ as mypy_version
    except ImportError:  # pragma: no cover - mypy is a dev dependency
        mypy_version = "none"
    h.update(mypy_version.encode())
    for path in sorted((root / "peer").rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def is_native() -> bool:
    """Whether this process runs the compiled scheduler."""
    import peer.scheduler.core as core

    suffix = Path(core.__file__ or "").name
    return any(suffix.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)


def build(cache: Path | None = None) -> Path:
    """The directory of a compiled copy of ``peer/`` (built now unless cached)."""
    root = _package_root()
    cache = cache or default_cache()
    target = cache / source_digest(root)
    if (target / ".built").exists():
        _prune(cache, keep=target)
        return target
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    try:
        shutil.copytree(
            root / "peer", work / "peer", ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
        try:
            done = subprocess.run(
                [sys.executable, "-m", "mypyc", *MODULES],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NativeBuildError(f"mypyc could not run: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-12:]
            raise NativeBuildError("mypyc failed:\n" + "\n".join(tail))
        shutil.rmtree(work / "build", ignore_errors=True)
        (work / ".built").touch()
        try:
            work.rename(target)
        except OSError:  # another process built the same sources meanwhile: use its build
            if not (target / ".built").exists():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    _prune(cache, keep=target)
    return target


def _prune(cache: Path, keep: Path) -> None:
    """Drop all but the newest :data:`KEEP_BUILDS` other builds (edits leave old ones)."""
    builds = [p for p in cache.iterdir() if p != keep and (p / ".built").exists()]
    builds.sort(key=lambda p: (p / ".built").stat().st_mtime_ns, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        shutil.rmtree(old, ignore_errors=True)


def native_env(path: Path) -> dict[str, str]:
    """The environment of a process that imports ``peer`` from the build at ``path``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(path), env.get("PYTHONPATH", "")) if p)
    env[ENV_FLAG] = "1"
    return env
