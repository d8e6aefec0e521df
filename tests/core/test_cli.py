"""The CLI as users run it: real subprocesses for the main path, CliRunner for the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from webseed.cli import app

runner = CliRunner()


def ws(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webseed.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_keygen_publish_verify_tamper(tmp_path: Path, release_tree: Path) -> None:
    assert ws("keygen", "--out", str(tmp_path / "k")).returncode == 0
    key, pub = tmp_path / "k" / "webseed.key", tmp_path / "k" / "webseed.pub"
    repo = tmp_path / "repo"
    out = ws("publish", str(release_tree), "--repo", str(repo), "--key", str(key))
    assert out.returncode == 0, out.stderr
    assert "index version 1: 3 added" in out.stdout
    ok = ws("verify", str(repo), "--root-key", str(pub))
    assert ok.returncode == 0 and "3 artifact(s) checked, ok" in ok.stdout
    target = repo / "releases" / "foo-1.0.tar.gz"
    data = bytearray(target.read_bytes())
    data[700_000] ^= 0x40
    target.write_bytes(bytes(data))
    bad = ws("verify", str(repo), "--root-key", str(pub), "--alerts", str(tmp_path / "a.jsonl"))
    assert bad.returncode == 1
    assert "FAILED releases/foo-1.0.tar.gz: chunk 2 does not match" in bad.stderr
    alert = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert alert["kind"] == "chunk-digest" and alert["chunk"] == 2


def test_verify_json_paths_and_errors(tmp_path: Path, release_tree: Path) -> None:
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    key, pub = str(tmp_path / "k" / "webseed.key"), str(tmp_path / "k" / "webseed.pub")
    repo = str(tmp_path / "repo")
    res = runner.invoke(app, ["publish", str(release_tree), "--repo", repo, "--key", key, "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["index_version"] == 1
    res = runner.invoke(
        app,
        ["verify", repo, "--root-key", pub, "--json", "--all-digests", "releases/foo-1.0.tar.gz"],
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["checked"] == 1
    res = runner.invoke(app, ["verify", repo, "--root-key", pub, "releases/absent.iso"])
    assert res.exit_code == 1 and "not in the signed index" in res.stderr
    runner.invoke(app, ["keygen", "--out", str(tmp_path / "other")])
    res = runner.invoke(
        app, ["verify", repo, "--root-key", str(tmp_path / "other" / "webseed.pub")]
    )
    assert res.exit_code == 1 and "pinned key" in res.stderr
    res = runner.invoke(app, ["verify", repo, "--root-key", str(tmp_path / "nope.pub")])
    assert res.exit_code == 2 and "cannot read key file" in res.stderr
    res = runner.invoke(app, ["keygen", "--out", str(tmp_path / "k")])
    assert res.exit_code == 2 and "refusing to overwrite" in res.stderr


def test_publish_split_roles_env_key_and_bad_specs(
    tmp_path: Path, release_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("r1", "r2", "online"):
        runner.invoke(app, ["keygen", "--out", str(tmp_path), "--name", name])
    monkeypatch.setenv("ONLINE_KEY", (tmp_path / "online.key").read_text())
    repo = str(tmp_path / "repo")
    res = runner.invoke(
        app,
        [
            "publish",
            str(release_tree),
            "--repo",
            repo,
            "--key",
            f"root={tmp_path / 'r1.key'}",
            "--key",
            f"root={tmp_path / 'r2.key'}",
            "--key",
            "targets,snapshot,timestamp=env:ONLINE_KEY",
            "--threshold",
            "root=2",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert (
        runner.invoke(app, ["verify", repo, "--root-key", str(tmp_path / "r1.pub")]).exit_code == 0
    )
    res = runner.invoke(
        app,
        [
            "publish",
            str(release_tree),
            "--repo",
            repo,
            "--key",
            str(tmp_path / "r1.key"),
            "--threshold",
            "root=x",
        ],
    )
    assert res.exit_code == 2 and "bad --threshold" in res.stderr
    res = runner.invoke(app, ["publish", str(release_tree), "--repo", repo, "--key", "env:NOPE"])
    assert res.exit_code == 2
    from webseed.commands.publish import parse_key_specs
    from webseed.errors import KeyFileError

    with pytest.raises(KeyFileError, match="at least one"):
        parse_key_specs([], [])


def test_encrypted_keygen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBSEED_KEY_PASSPHRASE", raising=False)
    res = runner.invoke(app, ["keygen", "--out", str(tmp_path), "--encrypt"])
    assert res.exit_code == 2
    monkeypatch.setenv("WEBSEED_KEY_PASSPHRASE", "pw")
    assert runner.invoke(app, ["keygen", "--out", str(tmp_path), "--encrypt"]).exit_code == 0
    assert b"ENCRYPTED" in (tmp_path / "webseed.key").read_bytes()


def test_release_keys_commands(tmp_path: Path) -> None:
    store = ["--keystore", str(tmp_path / "store")]
    res = runner.invoke(app, ["keys", "generate", "--out", str(tmp_path / "dev"), *store])
    assert res.exit_code == 0
    kid = res.stdout.split()[-1]
    assert f"trusted {kid}" in runner.invoke(app, ["keys", "list", *store]).stdout
    import minisign

    (tmp_path / "f").write_bytes(b"release" * 1000)
    secret = minisign.SecretKey.from_file(tmp_path / "dev" / "release.key")
    (tmp_path / "f.minisig").write_bytes(bytes(secret.sign_file(tmp_path / "f", prehash=True)))
    res = runner.invoke(app, ["keys", "verify", str(tmp_path / "f"), *store])
    assert res.exit_code == 0 and kid in res.stdout
    assert runner.invoke(app, ["keys", "revoke", kid, *store]).exit_code == 0
    assert f"revoked {kid}" in runner.invoke(app, ["keys", "list", *store]).stdout
    res = runner.invoke(app, ["keys", "verify", str(tmp_path / "f"), *store])
    assert res.exit_code == 1 and "revoked" in res.stderr
    res = runner.invoke(app, ["keys", "add", str(tmp_path / "dev" / "release.pub"), *store])
    assert res.exit_code == 2
    runner.invoke(app, ["keys", "generate", "--out", str(tmp_path / "d2"), "--name", "b", *store])
    res = runner.invoke(
        app, ["keys", "add", str(tmp_path / "d2" / "b.pub"), "--keystore", str(tmp_path / "s2")]
    )
    assert res.exit_code == 0
    assert runner.invoke(app, ["version"]).stdout.strip() == "0.1.0"
