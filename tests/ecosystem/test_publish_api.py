"""The Python publishing API, end to end through examples/publish_from_build.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import webseed
from tests.conftest import write_random
from tests.ecosystem.conftest import keygen
from webseed.errors import KeyFileError
from webseed.index.client import open_index_once
from webseed.index.keys import RoleKeys
from webseed.integrity.keys import load_private_key, load_public_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "publish_from_build.py"


def run_example(*args: str, key_pem: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WEBSEED_KEY"}
    if key_pem is not None:
        env["WEBSEED_KEY"] = key_pem
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def test_example_publishes_incrementally_with_key_from_env(tmp_path: Path) -> None:
    key, pub = keygen(tmp_path / "k")
    pem = key.read_text()
    dist = tmp_path / "dist"
    write_random(dist / "demo-1.0.tar.gz", 300_000, seed=1)
    write_random(dist / "demo-1.0.iso", 1_100_000, seed=2)
    repo = tmp_path / "public"
    first = run_example(str(dist), str(repo), "--mirror", "https://cdn.example.org/r", key_pem=pem)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["added"] == ["demo-1.0.iso", "demo-1.0.tar.gz"]
    assert report["pypi_projects"] == 1  # the sdist gets a PEP 503 page
    index = open_index_once(str(repo), load_public_key(pub))
    assert index.lookup("demo-1.0.iso").size == 1_100_000
    assert [m["url"] for m in index.mirrors] == ["https://cdn.example.org/r"]
    # The key never lands on disk in the published tree.
    secret = pem.strip().splitlines()[1].encode()
    assert not any(secret in p.read_bytes() for p in repo.rglob("*") if p.is_file())

    write_random(dist / "demo-1.1.iso", 2000, seed=3)
    second = run_example(str(dist), str(repo), key_pem=pem)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["added"] == ["demo-1.1.iso"]
    assert sorted(again["unchanged"]) == ["demo-1.0.iso", "demo-1.0.tar.gz"]
    assert again["hashed_bytes"] == 2000 and again["index_version"] > report["index_version"]
    index = open_index_once(str(repo), load_public_key(pub))
    assert [m["url"] for m in index.mirrors] == ["https://cdn.example.org/r"]  # kept

    failed = run_example(str(dist), str(repo), key_pem=None)  # WEBSEED_KEY unset
    assert failed.returncode == 1
    assert failed.stderr.startswith("publish failed:") and "WEBSEED_KEY" in failed.stderr


def test_publish_accepts_key_objects_and_role_specs(tmp_path: Path) -> None:
    key, _pub = keygen(tmp_path / "k")
    dist = tmp_path / "dist"
    write_random(dist / "a.bin", 1000)
    private = load_private_key(str(key))
    r1 = webseed.publish(dist, tmp_path / "r1", key=private, apt=False, pypi=False)
    assert r1.added == ["a.bin"] and r1.pypi_projects == 0
    roles = RoleKeys.from_assignments([(("root", "targets", "snapshot", "timestamp"), private)])
    assert webseed.publish(dist, tmp_path / "r2", key=roles).added == ["a.bin"]
    specs = [f"root={key}", f"targets,snapshot,timestamp={key}"]
    r3 = webseed.publish(dist, tmp_path / "r3", key=specs, thresholds={"root": 1})
    assert r3.index_version >= 1
    with pytest.raises(KeyFileError):
        webseed.publish(dist, tmp_path / "r4", key=str(tmp_path / "missing.key"))
    with pytest.raises(TypeError):
        webseed.publish(dist, tmp_path / "r5", key=[private])  # type: ignore[list-item]
    with pytest.raises(AttributeError):
        webseed.nothing_here  # noqa: B018
