"""`webseed get` beyond the given sources: signed index mirrors, blocked peers, patch updates."""

from __future__ import annotations

import json
import random
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.nginx import Nginx, nginx_binary
from tests.prereq import needs
from webseed.cli import app

runner = CliRunner()


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def publish(src: Path, repo: Path, key: Path, mirrors: list[str] | None = None) -> dict:
    args = ["publish", str(src), "--repo", str(repo), "--key", str(key), "--json"]
    if mirrors is not None:
        (repo.parent / "mirrors.json").write_text(json.dumps(mirrors))
        args += ["--mirrors", str(repo.parent / "mirrors.json")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    assert runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")]).exit_code == 0
    return tmp_path / "k" / "webseed.key", tmp_path / "k" / "webseed.pub"


@needs(nginx_binary() is None, "nginx not installed")
def test_index_mirrors_with_every_peer_blocked(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    data = random.Random(1).randbytes(3 * 1024 * 1024 + 5)
    (tmp_path / "src" / "releases").mkdir(parents=True)
    (tmp_path / "src" / "releases" / "os-2.0.iso").write_bytes(data)
    repo = tmp_path / "repo"
    publish(tmp_path / "src", repo, key)
    with Nginx(repo) as m1, Nginx(repo) as m2:
        # The signed index lists a dead mirror and two live ones; only --index is given.
        publish(tmp_path / "src", repo, key, mirrors=[dead_url(), m1.url, m2.url])
        out = tmp_path / "os.iso"
        res = runner.invoke(
            app,
            ["get", "releases/os-2.0.iso", "--root-key", str(pub), "-o", str(out), "--json",
             "--index", m1.url, "--peer", dead_url(), "--peer", dead_url(), "--index-mirrors", "2",
             "--state-dir", str(tmp_path / "state"), "--give-up-after", "10"],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert out.read_bytes() == data
    used = report["index_mirrors"]["used"]
    assert len(used) == 2 and len(report["index_mirrors"]["skipped"]) == 1
    served = {s["url"]: s["bytes"] for s in report["sources"]}
    assert sum(served[u] for u in used) == len(data)  # the blocked peers served nothing


@needs(nginx_binary() is None, "nginx not installed")
def test_update_with_a_patch_from_the_swarm(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    rng = random.Random(2)
    v1 = rng.randbytes(2 * 1024 * 1024)
    v2 = bytearray(v1)
    for i in range(0, len(v2), 200_000):
        v2[i : i + 64] = rng.randbytes(64)
    src = tmp_path / "src" / "releases"
    src.mkdir(parents=True)
    (src / "tool-1.0.bin").write_bytes(v1)
    repo = tmp_path / "repo"
    publish(tmp_path / "src", repo, key)
    (src / "tool-1.1.bin").write_bytes(bytes(v2))
    assert any(p.startswith("patches/") for p in publish(tmp_path / "src", repo, key)["added"])
    old = tmp_path / "have-1.0.bin"
    old.write_bytes(v1)
    out = tmp_path / "tool-1.1.bin"
    with Nginx(repo) as mirror:
        res = runner.invoke(
            app,
            ["get", "releases/tool-1.1.bin", "--root-key", str(pub), "-o", str(out), "--json",
             "--mirror", mirror.url, "--from", str(old), "--state-dir", str(tmp_path / "s")],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert out.read_bytes() == bytes(v2) and old.read_bytes() == v1
        patch = report["patch"]
        assert patch["saved_pct"] > 90 and report["fetched_bytes"] < len(v2) // 10
        # A file no patch starts from: the full download, no patch note.
        stranger = tmp_path / "stranger.bin"
        stranger.write_bytes(b"x" * 1000)
        res = runner.invoke(
            app,
            ["get", "releases/tool-1.1.bin", "--root-key", str(pub), "-o", str(tmp_path / "full"),
             "--json", "--mirror", mirror.url, "--from", str(stranger),
             "--state-dir", str(tmp_path / "s")],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "patch" not in json.loads(res.stdout)
    assert (tmp_path / "full").read_bytes() == bytes(v2)


@needs(nginx_binary() is None, "nginx not installed")
def test_finished_output_is_checked_not_fetched_again(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    key, pub = keys
    data = random.Random(3).randbytes(1_500_000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a-1.0.bin").write_bytes(data)
    publish(tmp_path / "src", tmp_path / "repo", key)
    out = tmp_path / "a.bin"
    args = [
        "get",
        "a-1.0.bin",
        "--root-key",
        str(pub),
        "-o",
        str(out),
        "--json",
        "--state-dir",
        str(tmp_path / "s"),
    ]
    with Nginx(tmp_path / "repo") as mirror:
        first = json.loads(runner.invoke(app, [*args, "--mirror", mirror.url]).stdout)
        again = json.loads(runner.invoke(app, [*args, "--mirror", mirror.url]).stdout)
        assert first["fetched_bytes"] == len(data)
        assert again["fetched_bytes"] == 0 and again["already_complete"] is True
        out.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a damaged old output is replaced
        third = json.loads(runner.invoke(app, [*args, "--mirror", mirror.url]).stdout)
    assert "already_complete" not in third and out.read_bytes() == data
