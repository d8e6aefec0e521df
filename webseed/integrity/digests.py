"""Whole-file digest algorithms, the policy that governs them, and streamed hashing.

Hashing a file reads it once, in bounded buffers, and feeds every digest from
the same read. The chunk merkle hashes run on a thread pool and each whole-file
digest on a thread of its own: hashlib releases the GIL on large updates, so
the work spreads over every core while memory stays at a few buffers.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from webseed.errors import WeakHashError
from webseed.integrity import merkle

#: Algorithms webseed can compute, by their manifest name, with hashlib's name.
ALGORITHMS: Mapping[str, str] = {
    "sha256": "sha256",
    "sha512": "sha512",
    "sha3-256": "sha3_256",
    "sha3-512": "sha3_512",
    "blake2b": "blake2b",
}
#: Algorithms known to be broken for collision resistance.
WEAK: frozenset[str] = frozenset({"md5", "sha1", "sha-1", "md4", "crc32"})

SEGMENT = 4 * 1024 * 1024
SMALL_FILE = 1024 * 1024
_WINDOW = 6


def new_hash(name: str) -> Any:
    """A fresh hashlib object for a manifest algorithm name."""
    return hashlib.new(ALGORITHMS[name])


@dataclass(frozen=True)
class HashPolicy:
    """Which whole-file digests a manifest must carry and which are refused.

    ``required`` must all be present (and are all checked by :meth:`check`);
    ``refused`` may not appear at all; anything else must be a known algorithm.
    """

    required: frozenset[str] = frozenset({"sha256", "sha3-256", "blake2b"})
    refused: frozenset[str] = WEAK
    verify: frozenset[str] = frozenset({"sha256"})

    def check(self, digests: Mapping[str, str]) -> None:
        """Raise :class:`WeakHashError` unless ``digests`` satisfies the policy."""
        for name in digests:
            if name.lower() in self.refused:
                raise WeakHashError(f"digest algorithm {name!r} is refused as weak")
            if name not in ALGORITHMS:
                raise WeakHashError(f"digest algorithm {name!r} is not supported")
        missing = sorted(self.required - set(digests))
        if missing:
            raise WeakHashError(f"required digest(s) missing: {', '.join(missing)}")

    def to_verify(self, digests: Mapping[str, str]) -> list[str]:
        """The whole-file digests a verifier computes: the ``verify`` set present."""
        return sorted(name for name in digests if name in self.verify)


DEFAULT_POLICY = HashPolicy()


@dataclass
class FileHashes:
    """Everything one pass over a file yields."""

    size: int
    chunk_size: int
    chunks: list[bytes] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    pieces_root: bytes = bytes(32)


class _Inline:
    """An executor that runs each task at once, in the caller's thread."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing to release."""


def _executor(threads: bool, workers: int) -> ThreadPoolExecutor | _Inline:
    return ThreadPoolExecutor(workers, thread_name_prefix="ws-hash") if threads else _Inline()


def hash_stream(
    read: Callable[[int], bytes],
    chunk_size: int,
    algorithms: Iterable[str],
    *,
    on_chunk: Callable[[int, bytes], None] | None = None,
    threads: bool = True,
) -> FileHashes:
    """Hash everything ``read`` yields (until it returns ``b""``).

    Computes the BEP 52 digest of every ``chunk_size`` chunk and the whole-file
    digests named in ``algorithms``. ``on_chunk(index, digest)`` is called in order
    as each chunk completes, so a verifier can stop at the first bad chunk.
    """
    if chunk_size < merkle.BLOCK_SIZE or chunk_size & (chunk_size - 1):
        raise ValueError("chunk size must be a power of two of at least 16 KiB")
    names = list(algorithms)
    hashers = {name: new_hash(name) for name in names}
    seg = min(chunk_size, SEGMENT)
    per_chunk = chunk_size // merkle.BLOCK_SIZE
    result = FileHashes(size=0, chunk_size=chunk_size)
    first_leaves: list[bytes] = []
    pending_leaves: list[bytes] = []
    window: deque[tuple[Future[list[bytes]], list[Future[None]]]] = deque()
    lanes = {name: _executor(threads, 1) for name in names}
    pool = _executor(threads, max(2, os.cpu_count() or 2))

    def settle_one() -> None:
        leaves_future, updates = window.popleft()
        for update in updates:
            update.result()
        pending_leaves.extend(leaves_future.result())
        while len(pending_leaves) >= per_chunk:
            emit(pending_leaves[:per_chunk])
            del pending_leaves[:per_chunk]

    def emit(leaves: list[bytes]) -> None:
        if not result.chunks:
            first_leaves.extend(leaves)
        digest = merkle.root_of(leaves, per_chunk)
        if on_chunk is not None:
            on_chunk(len(result.chunks), digest)
        result.chunks.append(digest)

    try:
        while True:
            buf = read(seg)
            if not buf:
                break
            result.size += len(buf)
            updates = [lanes[name].submit(hashers[name].update, buf) for name in names]
            window.append((pool.submit(merkle.block_hashes, buf), updates))
            if len(window) >= _WINDOW:
                settle_one()
        while window:
            settle_one()
        if pending_leaves:
            emit(pending_leaves)
    finally:
        for lane in lanes.values():
            lane.shutdown(wait=True, cancel_futures=True)
        pool.shutdown(wait=True, cancel_futures=True)
    result.digests = {name: hashers[name].hexdigest() for name in names}
    if result.size == 0:
        result.pieces_root = bytes(32)
    elif len(result.chunks) == 1:
        result.pieces_root = merkle.root_of(first_leaves, merkle.next_pow2(len(first_leaves)))
    else:
        result.pieces_root = merkle.pieces_root(result.chunks, chunk_size)
    return result


def hash_file(
    path: str | os.PathLike[str],
    chunk_size: int,
    algorithms: Iterable[str],
    *,
    on_chunk: Callable[[int, bytes], None] | None = None,
) -> FileHashes:
    """:func:`hash_stream` over a file on disk, read unbuffered in large segments."""
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size <= SMALL_FILE:
            # Thread pools cost more than they save on small files (indexes of thousands).
            return hash_stream(f.read, chunk_size, algorithms, on_chunk=on_chunk, threads=False)
        return hash_stream(f.read, chunk_size, algorithms, on_chunk=on_chunk)
