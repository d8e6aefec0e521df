"""Shared fixtures: temporary repositories, keys and real static HTTP servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prereq import missing


def write_random(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` deterministic pseudo-random bytes."""
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


@pytest.fixture
def release_tree(tmp_path: Path) -> Path:
    """A small release tree: a multi-chunk tarball, a small file, a nested file."""
    src = tmp_path / "src"
    write_random(src / "releases" / "foo-1.0.tar.gz", 1_300_000, seed=1)
    write_random(src / "releases" / "foo-1.0.tar.gz.asc", 300, seed=2)
    write_random(src / "pool" / "main" / "b" / "bar_2.1_amd64.deb", 70_000, seed=3)
    return src


@pytest.fixture
def static_server() -> Iterator[object]:
    """Start ``python -m http.server`` on 127.0.0.1 (an ephemeral port) for a directory."""
    procs: list[subprocess.Popen[str]] = []

    def start(directory: Path) -> str:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
                str(directory),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.search(r"port (\d+)", line)
            if match:
                return f"http://127.0.0.1:{match.group(1)}"
        raise RuntimeError("http.server did not start")

    yield start
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.fixture
def nginx_mirror() -> Iterator[object]:
    """Start nginx (a plain static mirror with ranges) serving a directory; stopped by PID."""
    from tests.nginx import Nginx, nginx_binary

    if nginx_binary() is None:
        missing("nginx (Debian nginx-light)")
    started: list[Nginx] = []

    def start(directory: Path) -> str:
        server = Nginx(directory.resolve()).__enter__()
        started.append(server)
        return server.url

    yield start
    for server in started:
        server.__exit__()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail (never skip) a test marked ``prereq`` whose prerequisite is absent."""
    for mark in item.iter_markers("prereq"):
        if mark.kwargs["absent"]:
            missing(mark.kwargs["what"])


@pytest.fixture(autouse=True)
def _private_xdg_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-test XDG state/config directories (inherited by the processes a test starts).

    ``webseed get`` remembers the peers that served it and ``serve``/``get`` make a
    peer identity on first run under these; one test's loopback peers must never
    become the next test's remembered peers, nor land in the user's home.
    """
    base = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_STATE_HOME", str(base / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
