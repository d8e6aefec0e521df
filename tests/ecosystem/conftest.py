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
