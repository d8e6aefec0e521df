from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from tests.conftest import write_random
from webseed.errors import WeakHashError
from webseed.integrity import digests, merkle
from webseed.integrity.digests import HashPolicy, hash_file, hash_stream


def test_policy_refuses_weak_and_unknown_and_missing() -> None:
    policy = HashPolicy()
    good = {"sha256": "0", "sha3-256": "0", "blake2b": "0"}
    policy.check(good)
    with pytest.raises(WeakHashError, match="weak"):
        policy.check({**good, "md5": "0"})
    with pytest.raises(WeakHashError, match="weak"):
        policy.check({**good, "SHA1": "0"})
    with pytest.raises(WeakHashError, match="not supported"):
        policy.check({**good, "whirlpool": "0"})
    with pytest.raises(WeakHashError, match="missing: sha3-256"):
        policy.check({"sha256": "0", "blake2b": "0"})
    assert policy.to_verify(good) == ["sha256"]
    relaxed = HashPolicy(required=frozenset({"blake2b"}), verify=frozenset({"blake2b", "sha256"}))
    relaxed.check({"blake2b": "0"})
    assert relaxed.to_verify(good) == ["blake2b", "sha256"]


@pytest.mark.parametrize("size", [0, 1, 16 * 1024, 300_000, 9 * 1024 * 1024 + 5])
def test_stream_matches_hashlib_and_merkle(tmp_path: Path, size: int) -> None:
    data = write_random(tmp_path / "f", size).read_bytes()
    chunk = 8 * 1024 * 1024 if size > 1_000_000 else 64 * 1024
    seen: list[int] = []
    out = hash_file(
        tmp_path / "f",
        chunk,
        ["sha256", "sha3-256", "blake2b", "sha512"],
        on_chunk=lambda i, d: seen.append(i),
    )
    assert out.size == size
    assert out.digests["sha256"] == hashlib.sha256(data).hexdigest()
    assert out.digests["sha3-256"] == hashlib.sha3_256(data).hexdigest()
    assert out.digests["blake2b"] == hashlib.blake2b(data).hexdigest()
    expected = [merkle.chunk_digest(data[i : i + chunk], chunk) for i in range(0, size, chunk)]
    assert out.chunks == expected
    assert seen == list(range(len(expected)))
    if size == 0:
        assert out.pieces_root == bytes(32)
    elif len(expected) == 1:
        assert out.pieces_root == merkle.small_file_root(data)
    else:
        assert out.pieces_root == merkle.pieces_root(expected, chunk)


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError):
        hash_stream(io.BytesIO(b"x").read, 1000, ["sha256"])
    with pytest.raises(ValueError):
        hash_stream(io.BytesIO(b"x").read, 3 * 16384, ["sha256"])


def test_new_hash_names() -> None:
    assert digests.new_hash("sha3-512").name == "sha3_512"
