"""Fixtures of the ecosystem tests: real `webseed serve` peers (subprocesses, stopped by PID)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from webseed.cli import app

WEBSEED = str(Path(sys.executable).parent / "webseed")


@pytest.fixture
def webseed_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """``start(repo, *args) -> (url, stderr_path)``: a `webseed serve REPO --port 0` subprocess."""
    procs: list[subprocess.Popen[str]] = []

    def start(repo: Path, *args: str) -> tuple[str, Path]:
        err = tmp_path_factory.mktemp("peer") / "stderr.log"
        with open(err, "w") as err_file:
            proc = subprocess.Popen(
                [WEBSEED, "serve", str(repo), "--port", "0", *args],
                stdout=subprocess.PIPE,
                stderr=err_file,
                text=True,
            )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "webseed: serving REPO at URL"
        m = re.search(r"(https?://\S+)", line)
        assert m, f"no URL printed: {line!r} {err.read_text()}"
        return m.group(1), err

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def publish_cli(src: Path, repo: Path, key: Path, *extra: str) -> None:
    """`webseed publish SRC --repo REPO --key KEY ...` through the CLI, asserting success."""
    res = CliRunner().invoke(
        app, ["publish", str(src), "--repo", str(repo), "--key", str(key), *extra]
    )
    assert res.exit_code == 0, res.output


def keygen(directory: Path) -> tuple[Path, Path]:
    """A fresh publisher key pair: (private key file, public key file)."""
    res = CliRunner().invoke(app, ["keygen", "--out", str(directory)])
    assert res.exit_code == 0, res.output
    return directory / "webseed.key", directory / "webseed.pub"


def libtorrent_download(torrent: bytes, save_path: Path, name: str, want: bytes) -> None:
    """Let a real libtorrent session fetch ``torrent`` (web seeds only) and check the file."""
    import time

    import libtorrent as lt

    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
        }
    )
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(lt.bdecode(torrent))
    params.save_path = str(save_path)
    handle = session.add_torrent(params)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not handle.status().is_seeding:
        time.sleep(0.1)
    assert handle.status().is_seeding, handle.status().state
    # Seeding means every piece passed libtorrent's hash check; its disk thread may still
    # be writing the last blocks out, so read the file back once they have landed.
    session.remove_torrent(handle)
    deadline = time.monotonic() + 20
    got = b""
    while time.monotonic() < deadline:
        got = (save_path / name).read_bytes()
        if got == want:
            break
        time.sleep(0.1)
    assert got == want
