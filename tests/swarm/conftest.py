"""Shared fixtures: a small repository directory with one artifact and its manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from webseed.manifest import Manifest, build_manifest

CHUNK = 256 * 1024
REPO_PATH = "releases/demo-1.0.bin"


@dataclass
class Artifact:
    root: Path
    file: Path
    manifest: Manifest
    data: bytes


def make_artifact(root: Path, size: int, seed: int = 0, chunk_size: int = CHUNK) -> Artifact:
    file = root / REPO_PATH
    file.parent.mkdir(parents=True, exist_ok=True)
    rnd = __import__("random").Random(seed)
    data = rnd.randbytes(size)
    file.write_bytes(data)
    manifest = build_manifest(file, REPO_PATH, chunk_size=chunk_size)
    return Artifact(root, file, manifest, data)


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    root = tmp_path / "repo"
    root.mkdir()
    return make_artifact(root, 8 * 1024 * 1024 + 12345)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    os.chmod(d, 0o755)
    return d
