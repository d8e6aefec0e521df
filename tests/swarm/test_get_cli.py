"""``webseed get`` end to end: a published repository, real peers and nginx, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import write_random
from tests.nginx import Nginx, nginx_binary
from tests.prereq import missing
from tests.swarm.servers import source
from webseed.cli import app

runner = CliRunner()
PATH = "releases/demo-os-1.0.iso"
SIZE = 6 * 1024 * 1024 + 999


@pytest.fixture
def published(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """(repository dir, public key, artifact bytes): keygen + publish through the CLI."""
    src = tmp_path / "src"
    write_random(src / PATH, SIZE, seed=9)
    assert runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")]).exit_code == 0
    repo = tmp_path / "repo"
    res = runner.invoke(
        app, ["publish", str(src), "--repo", str(repo), "--key", str(tmp_path / "k/webseed.key")]
    )
    assert res.exit_code == 0, res.output
    return repo, tmp_path / "k" / "webseed.pub", (src / PATH).read_bytes()


def test_get_from_peers_and_nginx_mirror_json(published, tmp_path: Path) -> None:
    if nginx_binary() is None:
        missing("nginx not installed")
    repo, pub, data = published
    p1, _ = source(repo, rate=3e6)
    p2, _ = source(repo, rate=3e6)
    bad, _ = source(repo, corrupt_all=True, chunk_size=256 * 1024)
    out = tmp_path / "got.iso"
    with p1, p2, bad, Nginx(repo) as mirror:
        res = runner.invoke(
            app,
            [
                "get", PATH, "--root-key", str(pub), "-o", str(out), "--json",
                "--peer", p1.url, "--peer", bad.url, "--peer", p2.url, "--mirror", mirror.url,
                "--state-dir", str(tmp_path / "state"), "--seed", "3",
            ],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and out.read_bytes() == data
    assert report["size"] == SIZE and report["elapsed_s"] > 0
    assert report["throughput_bytes_per_s"] > 0
    assert sum(s["bytes"] for s in report["sources"]) == SIZE
    if report["banned"]:
        assert list(report["banned"]) == [bad.url]


def test_get_plain_summary_and_errors(published, tmp_path: Path) -> None:
    repo, pub, data = published
    srv, _ = source(repo)
    out = tmp_path / "x.iso"
    state = str(tmp_path / "state")
    with srv:
        res = runner.invoke(
            app, ["get", PATH, "--root-key", str(pub), "-o", str(out), "--mirror", srv.url,
                  "--state-dir", state],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert out.read_bytes() == data and "mirror" in res.stdout and srv.url in res.stdout
        # Not in the index: verification failure (1).
        res = runner.invoke(
            app, ["get", "releases/nope.iso", "--root-key", str(pub), "-o", str(out),
                  "--mirror", srv.url, "--state-dir", state, "--json"],
        )  # fmt: skip
        assert res.exit_code == 1 and json.loads(res.stdout)["ok"] is False
        res = runner.invoke(
            app, ["get", "releases/nope.iso", "--root-key", str(pub), "-o", str(out),
                  "--mirror", srv.url, "--state-dir", state],
        )  # fmt: skip
        assert res.exit_code == 1 and "not in the signed index" in res.stderr
    # No source at all: usage (2).
    res = runner.invoke(app, ["get", PATH, "--root-key", str(pub), "-o", str(out)])
    assert res.exit_code == 2
    # Index reachable, data source dead: sources failed (3).
    srv2, _ = source(repo)
    with srv2:
        res = runner.invoke(
            app, ["get", PATH, "--root-key", str(pub), "-o", str(tmp_path / "y"), "--quiet",
                  "--index", srv2.url, "--mirror", "http://127.0.0.1:9", "--state-dir", state,
                  "--give-up-after", "0.5"],
        )  # fmt: skip
    assert res.exit_code == 3 and "no progress" in res.stderr


def _journal_records(path: Path) -> int:
    try:
        return max(0, (path.stat().st_size - 36) // 8)
    except FileNotFoundError:
        return 0


def test_resume_after_sigkill_at_several_points(published, tmp_path: Path) -> None:
    repo, pub, data = published
    out = tmp_path / "r.iso"
    journal = Path(f"{out}.part.journal")
    srv, _ = source(repo, rate=2.5e6)
    cmd = [
        sys.executable, "-m", "webseed.cli", "get", PATH, "--root-key", str(pub), "-o", str(out),
        "--state-dir", str(tmp_path / "state"), "--quiet",
    ]  # fmt: skip
    chunks = -(-SIZE // (256 * 1024))
    with srv:
        cmd += ["--mirror", srv.url]
        kills = 0
        for target in (1, chunks // 3, (2 * chunks) // 3):
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                if _journal_records(journal) >= target:
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(10)
            # Killed mid-download: no output file, never a wrong one.
            assert not out.exists() or out.read_bytes() == data
        assert kills >= 2
        before = _journal_records(journal)
        assert before >= 1
        res = subprocess.run([*cmd[:-2], "--json", *cmd[-2:]], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert out.read_bytes() == data
    assert report["resumed_chunks"] >= 1
    assert report["fetched_bytes"] < SIZE
    assert not journal.exists()
