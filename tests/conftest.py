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


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for servers that cannot bind :0)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX_CONF = """
{user}
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ application/octet-stream iso bin; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def nginx_binary() -> str | None:
    import shutil

    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


@pytest.fixture
def nginx_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start nginx (a plain static mirror with ranges) serving a directory; stopped by PID."""
    binary = nginx_binary()
    if binary is None:
        missing("nginx not installed (Debian nginx-light; make system-deps)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(directory: Path) -> str:
        import socket

        prefix = tmp_path_factory.mktemp("nginx")
        port = free_port()
        conf = prefix / "nginx.conf"
        # As root, nginx's workers would run as nobody and could not read pytest's 0700 dirs.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(
            NGINX_CONF.format(user=user, prefix=prefix, port=port, root=directory.resolve())
        )
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    yield start
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail (never skip) a test marked ``prereq`` whose prerequisite is absent."""
    for mark in item.iter_markers("prereq"):
        if mark.kwargs["absent"]:
            missing(mark.kwargs["what"])
