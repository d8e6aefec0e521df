"""BEP 52 merkle hashes checked against libtorrent (an independent implementation)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import libtorrent as lt
import pytest

from webseed.integrity import merkle
from webseed.integrity.digests import hash_file

KiB = 1024


def _libtorrent_v2(path: Path, piece: int) -> tuple[bytes, list[bytes]]:
    fs = lt.file_storage()
    lt.add_files(fs, str(path))
    ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v2_only)
    lt.set_piece_hashes(ct, str(path.parent))
    t = ct.generate()
    node = t[b"info"][b"file tree"][path.name.encode()][b""]
    root = node[b"pieces root"]
    layer = t.get(b"piece layers", {}).get(root, b"")
    return root, [layer[i : i + 32] for i in range(0, len(layer), 32)]


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (1, 16 * KiB),
        (16 * KiB, 16 * KiB),
        (16 * KiB + 1, 32 * KiB),
        (100 * KiB, 64 * KiB),
        (1000 * KiB + 7, 64 * KiB),
        (3 * 256 * KiB, 256 * KiB),
        (5 * 256 * KiB + 12345, 256 * KiB),
    ],
)
def test_matches_libtorrent(tmp_path: Path, size: int, piece: int) -> None:
    f = tmp_path / "artifact.bin"
    f.write_bytes(os.urandom(size))
    root, layer = _libtorrent_v2(f, piece)
    ours = hash_file(f, piece, ["sha256"])
    assert ours.pieces_root == root
    if size > piece:
        assert ours.chunks == layer
    assert ours.digests["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_hand_computed_two_blocks() -> None:
    a, b = b"a" * merkle.BLOCK_SIZE, b"b" * 10
    ha, hb = hashlib.sha256(a).digest(), hashlib.sha256(b).digest()
    assert merkle.chunk_digest(a + b, 32 * KiB) == hashlib.sha256(ha + hb).digest()
    # Padded to four leaves in a 64 KiB chunk: the right half is two zero leaves.
    zero = hashlib.sha256(bytes(64)).digest()
    left = hashlib.sha256(ha + hb).digest()
    assert merkle.chunk_digest(a + b, 64 * KiB) == hashlib.sha256(left + zero).digest()
    assert merkle.zero_root(1) == bytes(32)
    assert merkle.root_of([], 1) == bytes(32)
    assert merkle.small_file_root(a + b) == left
    assert merkle.next_pow2(5) == 8
