"""`webseed serve --bootstrap` takes part in peer exchange: two real peer processes find each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tests.conftest import write_random
from webseed.cli import app

runner = CliRunner()


def start_peer(repo: Path, state: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "webseed.cli", "serve", str(repo), "--port", "0",
         "--state-dir", str(state), "--gossip-interval", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "serving" in line, line
    return proc, line.strip().split(" at ")[-1]


def test_two_serve_processes_discover_each_other(tmp_path: Path) -> None:
    write_random(tmp_path / "src" / "a-1.0.bin", 5000)
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    res = runner.invoke(
        app,
        [
            "publish",
            str(tmp_path / "src"),
            "--repo",
            str(tmp_path / "repo"),
            "--key",
            str(tmp_path / "k" / "webseed.key"),
        ],
    )
    assert res.exit_code == 0
    a, a_url = start_peer(tmp_path / "repo", tmp_path / "a", "--discover")
    procs = [a]
    try:
        b, b_url = start_peer(tmp_path / "repo", tmp_path / "b", "--bootstrap", a_url)
        procs.append(b)
        found_at_a = found_at_b = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (found_at_a and found_at_b):
            at_a = httpx.get(f"{a_url}/.well-known/webseed/pex", timeout=5).text
            at_b = httpx.get(f"{b_url}/.well-known/webseed/pex", timeout=5).text
            found_at_a, found_at_b = b_url in at_a, a_url in at_b
            time.sleep(0.3)
        assert found_at_a and found_at_b
        # The artifact app is still there behind the exchange endpoints.
        assert (
            httpx.get(f"{b_url}/a-1.0.bin", timeout=5).content
            == (tmp_path / "src" / "a-1.0.bin").read_bytes()
        )
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=15)
