from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_random
from webseed.errors import IntegrityError, ManifestError, UnsafePathError, WeakHashError
from webseed.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    PatchLink,
    build_manifest,
    canonical_json,
    default_chunk_size,
)

GB = 1000**3


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    write_random(tmp_path / "a.iso", 700_000)
    link = PatchLink("0.9", "ab" * 32, "patches/a-0.9-1.0.wsp", 1234, "cd" * 32)
    return build_manifest(tmp_path / "a.iso", "releases/a-1.0.iso", version="1.0", patches=[link])


def test_roundtrip_is_canonical_and_content_addressed(manifest: Manifest) -> None:
    raw = manifest.encode()
    assert raw == canonical_json(json.loads(raw))
    assert manifest.digest == hashlib.sha256(raw).hexdigest()
    again = Manifest.parse(raw, expected_digest=manifest.digest)
    assert again == manifest
    assert again.chunk_count == 3 and again.chunk_range(2) == (524288, 700_000)
    assert again.patches[0].from_version == "0.9"
    with pytest.raises(IndexError):
        again.chunk_range(3)


def test_default_chunk_size_bounds_chunk_count() -> None:
    assert default_chunk_size(0) == 256 * 1024
    assert default_chunk_size(100 * 1000**2) == 256 * 1024
    for size in (GB, 4 * GB, 20 * GB):
        chunk = default_chunk_size(size)
        assert chunk & (chunk - 1) == 0
        assert -(-size // chunk) <= 2048
    assert default_chunk_size(10**15) == 64 * 1024 * 1024


def _mutate(manifest: Manifest, **changes: Any) -> bytes:
    obj = manifest.to_dict()
    obj.update(changes)
    return canonical_json(obj)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"format": "other/1"}, ManifestError, "unknown manifest format"),
        ({"extra": 1}, ManifestError, "unknown"),
        ({"path": "../../etc/passwd"}, UnsafePathError, "segment"),
        ({"path": 7}, ManifestError, "'path' must be str"),
        ({"size": True}, ManifestError, "'size' must be int"),
        ({"size": -1}, ManifestError, "out of range"),
        ({"chunk_size": 1000}, ManifestError, "power of two"),
        ({"chunks": []}, ManifestError, "chunk digests"),
        ({"pieces_root": "zz" * 32}, ManifestError, "not hex"),
        ({"pieces_root": "AB" * 32}, ManifestError, "lower-case"),
        ({"pieces_root": "ab"}, ManifestError, "64 hex digits"),
        ({"digests": {"md5": "00" * 16}}, WeakHashError, "weak"),
        ({"patches": [{"from_version": "1"}]}, ManifestError, "patch link"),
        ({"patches": ["x"]}, ManifestError, "patch link"),
    ],
)
def test_bad_manifests_refused(
    manifest: Manifest, changes: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        Manifest.parse(_mutate(manifest, **changes))


def test_missing_field(manifest: Manifest) -> None:
    obj = manifest.to_dict()
    del obj["version"]
    with pytest.raises(ManifestError, match="missing"):
        Manifest.parse(canonical_json(obj))


def test_garbage_truncated_and_non_canonical(manifest: Manifest) -> None:
    raw = manifest.encode()
    for bad in (b"", b"\xff\xfe", raw[: len(raw) // 2], b"[]", b"null"):
        with pytest.raises(ManifestError):
            Manifest.parse(bad)
    pretty = json.dumps(manifest.to_dict(), indent=1).encode()
    with pytest.raises(ManifestError, match="canonical"):
        Manifest.parse(pretty)
    with pytest.raises(ManifestError, match="larger"):
        Manifest.parse(b" " * (MAX_MANIFEST_BYTES + 1))


def test_digest_mismatch_checked_before_parsing(manifest: Manifest) -> None:
    raw = manifest.encode()
    with pytest.raises(IntegrityError, match="digest mismatch"):
        Manifest.parse(raw, expected_digest="00" * 32)
    with pytest.raises(IntegrityError):
        Manifest.parse(b"garbage", expected_digest=manifest.digest)


def test_build_refuses_bad_path(tmp_path: Path) -> None:
    write_random(tmp_path / "f", 10)
    with pytest.raises(UnsafePathError):
        build_manifest(tmp_path / "f", "/abs")
