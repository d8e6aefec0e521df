"""BitTorrent v2 (BEP 52) merkle hashing: the chunk digests of a manifest.

A chunk's digest is its BEP 52 piece-layer hash: the SHA-256 merkle root over
the chunk's 16 KiB blocks, where the tree is padded with all-zero leaf hashes
up to the full number of blocks in a chunk. The file's ``pieces root`` is the
root over all leaves padded to a power of two. With these, a manifest already
holds a v2 torrent's piece layer, so a `.torrent` export is a translation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

BLOCK_SIZE = 16 * 1024
_ZERO = bytes(32)


def _pair(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(left + right).digest()


@lru_cache(maxsize=64)
def zero_root(leaves: int) -> bytes:
    """Root of a tree of ``leaves`` all-zero leaf hashes (``leaves`` a power of two)."""
    if leaves <= 1:
        return _ZERO
    half = zero_root(leaves // 2)
    return _pair(half, half)


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def root_of(hashes: Sequence[bytes], width: int, pad: bytes = _ZERO) -> bytes:
    """Merkle root of ``hashes`` padded with ``pad`` to ``width`` leaves (a power of two)."""
    layer = list(hashes) + [pad] * (width - len(hashes))
    while len(layer) > 1:
        layer = [_pair(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def block_hashes(data: bytes | memoryview) -> list[bytes]:
    """SHA-256 of each 16 KiB block of ``data`` (the last block may be short)."""
    view = memoryview(data)
    return [
        hashlib.sha256(view[i : i + BLOCK_SIZE]).digest() for i in range(0, len(view), BLOCK_SIZE)
    ]


def chunk_digest(data: bytes | memoryview, chunk_size: int) -> bytes:
    """BEP 52 piece-layer hash of one chunk (``chunk_size`` a power of two >= 16 KiB)."""
    return root_of(block_hashes(data), chunk_size // BLOCK_SIZE)


def pieces_root(chunk_digests: Sequence[bytes], chunk_size: int) -> bytes:
    """The BEP 52 ``pieces root`` of a file from its piece layer.

    For a file of at most one chunk, BEP 52 pads the block leaves only to the next
    power of two (not to a whole piece), so that case needs the leaves themselves:
    use :func:`small_file_root` there.
    """
    per_chunk = chunk_size // BLOCK_SIZE
    return root_of(chunk_digests, next_pow2(len(chunk_digests)), zero_root(per_chunk))


def small_file_root(data: bytes | memoryview) -> bytes:
    """BEP 52 ``pieces root`` of a file no larger than one chunk."""
    leaves = block_hashes(data)
    return root_of(leaves, next_pow2(len(leaves)))
