"""Disk full (a real tmpfs of a few MiB): a clear error, consistent state, completes once freed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webseed.errors import StorageError, WebseedError
from webseed.index.client import open_index
from webseed.index.keys import RoleKeys
from webseed.index.publisher import Publisher
from webseed.manifest import build_manifest
from webseed.storage import PartialArtifact

MiB = 1024 * 1024


def test_partial_artifact_on_a_full_disk(tmp_path: Path, small_disk) -> None:  # type: ignore[no-untyped-def]
    disk = small_disk("2M")
    content = random.Random(5).randbytes(6 * MiB)
    (tmp_path / "orig.bin").write_bytes(content)
    m = build_manifest(tmp_path / "orig.bin", "a.bin", chunk_size=256 * 1024)
    part = PartialArtifact(disk.path / "a.bin", m)
    stored = []
    with pytest.raises(StorageError, match=r"No space left|short write"):
        for i in range(m.chunk_count):
            s, e = m.chunk_range(i)
            part.write_chunk(i, content[s:e])
            stored.append(i)
    assert 0 < len(stored) < m.chunk_count
    assert part.verified_count == len(stored)  # the failed chunk is not counted
    part.close()
    # Reopened after the failure (as after a crash): exactly the stored chunks, all verified.
    with PartialArtifact(disk.path / "a.bin", m) as again:
        assert again.missing() == list(range(len(stored), m.chunk_count))
        s, e = m.chunk_range(stored[-1])
        assert again.read(s, e - s) == content[s:e]
    # Space freed: the same partial state completes to the right file.
    disk.grow("16M")
    with PartialArtifact(disk.path / "a.bin", m) as again:
        for i in again.missing():
            s, e = m.chunk_range(i)
            again.write_chunk(i, content[s:e])
        out = again.finalize(disk.path / "done.bin")
    assert out.read_bytes() == content
    assert not (disk.path / "a.bin.journal").exists()


def test_publish_on_a_full_disk(tmp_path: Path, small_disk) -> None:  # type: ignore[no-untyped-def]
    disk = small_disk("3M")
    key = Ed25519PrivateKey.generate()
    src = tmp_path / "src"
    (src / "releases").mkdir(parents=True)
    (src / "releases" / "a-1.0.bin").write_bytes(random.Random(6).randbytes(MiB))
    repo = disk.path / "repo"
    Publisher(repo, RoleKeys.single(key)).publish(src)
    assert open_index(str(repo), key.public_key(), state_dir=tmp_path / "s0").version == 1
    (src / "releases" / "b-2.0.bin").write_bytes(random.Random(7).randbytes(3 * MiB))
    with pytest.raises((WebseedError, OSError)) as info:
        Publisher(repo, RoleKeys.single(key)).publish(src)
    assert "space" in str(info.value).lower(), info.value  # the error says what is wrong
    # The published index is still the complete, verifiable version 1.
    index = open_index(str(repo), key.public_key(), state_dir=tmp_path / "s1")
    assert index.version == 1 and index.paths() == ["releases/a-1.0.bin"]
    disk.grow("32M")
    Publisher(repo, RoleKeys.single(key)).publish(src)
    index = open_index(str(repo), key.public_key(), state_dir=tmp_path / "s1")
    assert index.version == 2
    assert index.paths() == ["releases/a-1.0.bin", "releases/b-2.0.bin"]
    index.fetch_manifest(index.lookup("releases/b-2.0.bin"))


def test_apply_patch_on_a_full_disk(tmp_path: Path, small_disk) -> None:  # type: ignore[no-untyped-def]
    from patches.apply import apply_patch
    from patches.create import create_patch

    disk = small_disk("1M")
    rnd = random.Random(8)
    old = rnd.randbytes(3 * MiB)
    new = bytearray(old)
    for _ in range(30):
        p = rnd.randrange(len(new) - 100)
        new[p : p + 20] = rnd.randbytes(20)
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(bytes(new))
    create_patch(tmp_path / "old", tmp_path / "new", tmp_path / "p")
    with pytest.raises((WebseedError, OSError)) as info:
        apply_patch(tmp_path / "old", tmp_path / "p", disk.path / "new")
    assert "space" in str(info.value).lower(), info.value
    assert list(disk.path.iterdir()) == []  # no half-written target, no temp file left
    disk.grow("8M")
    apply_patch(tmp_path / "old", tmp_path / "p", disk.path / "new")
    assert (disk.path / "new").read_bytes() == bytes(new)
