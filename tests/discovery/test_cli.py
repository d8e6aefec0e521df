"""``webseed peers`` against a real peer process on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from peer.discovery.bootstrap import save_last_served
from webseed.cli import app


def test_peers_discover_and_remembered(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / ("ab" * 32)).write_bytes(b"x")  # name only; content not fetched here
    status = tmp_path / "status.json"
    env = {**os.environ, "HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.discovery.nodeproc",
            "--dir",
            str(files),
            "--status",
            str(status),
            "--host",
            "127.0.61.1",
        ],
        env=env,
    )
    try:
        for _ in range(200):
            if status.exists() and json.loads(status.read_text())["urls"]:
                break
            time.sleep(0.05)
        info = json.loads(status.read_text())
        runner = CliRunner()
        state = tmp_path / "state"
        out = runner.invoke(
            app, ["peers", "discover", info["urls"][0], "--state-dir", str(state), "--json"]
        )
        assert out.exit_code == 0, out.output
        (row,) = json.loads(out.stdout)["peers"]
        assert row["peer"] == info["peer"] and row["have"] == ["ab" * 32]
        out = runner.invoke(app, ["peers", "discover", info["urls"][0], "--state-dir", str(state)])
        assert info["peer"] in out.stdout
        assert runner.invoke(app, ["peers", "discover", "nonsense"]).exit_code == 2
        dead = runner.invoke(
            app, ["peers", "discover", "http://127.0.0.1:1", "--state-dir", str(state)]
        )
        assert dead.exit_code == 3 and "warning" in dead.output
        save_last_served(state, {info["urls"][0]: 123})
        listed = runner.invoke(app, ["peers", "remembered", "--state-dir", str(state)])
        assert f"{info['urls'][0]}  123 bytes" in listed.stdout
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
