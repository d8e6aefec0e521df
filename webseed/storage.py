"""Storage of partial artifacts: a sparse data file plus a journal of verified chunks.

The data file is preallocated (sparse) to the artifact's size and chunks are
written at their offsets in any order. After a chunk's bytes match its digest
in the manifest they are written, and then a record naming the chunk is
appended to the journal. Every so often (and before completion) the data file
is flushed to disk and a *sync mark* is appended and flushed: records before
the last sync mark are trusted on reopen; records after it were written while
the data might not yet be on disk (an OS crash), so those chunks are re-hashed
on reopen and kept only if they still verify. A process killed at any instant
therefore keeps every verified chunk and never reports an unverified byte as
verified. Completion flushes everything and renames the file into place.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import struct
from pathlib import Path

from webseed.errors import IntegrityError, StorageError
from webseed.integrity.merkle import chunk_digest
from webseed.manifest import Manifest

_MAGIC = b"WSJ1"
_RECORD = struct.Struct("<II")
_SYNC = 0xFFFFFFFF
#: Flush data and write a sync mark after this many newly verified bytes.
SYNC_BYTES = 64 * 1024 * 1024


def _crc(word: int, salt: bytes) -> int:
    return binascii.crc32(struct.pack("<I", word) + salt) & 0xFFFFFFFF


class PartialArtifact:
    """One artifact being assembled at ``data_path``, with its journal beside it.

    Open an existing pair to resume: verified chunks survive, nothing else does.
    """

    def __init__(
        self,
        data_path: str | os.PathLike[str],
        manifest: Manifest,
        *,
        sync_bytes: int = SYNC_BYTES,
    ) -> None:
        self.manifest = manifest
        self.data_path = Path(data_path)
        self.journal_path = self.data_path.with_name(self.data_path.name + ".journal")
        self._salt = bytes.fromhex(manifest.digest)
        self._sync_bytes = sync_bytes
        self._unsynced = 0
        self._verified = bytearray(manifest.chunk_count)
        self._count = 0
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(self._fd).st_size != manifest.size:
                os.ftruncate(self._fd, manifest.size)
            self._open_journal()
        except BaseException:
            os.close(self._fd)
            raise

    # -- journal -----------------------------------------------------------------

    def _header(self) -> bytes:
        return _MAGIC + self._salt

    def _open_journal(self) -> None:
        header = self._header()
        trusted: list[int] = []
        tail: list[int] = []
        good_len = len(header)
        if self.journal_path.exists():
            raw = self.journal_path.read_bytes()
            if raw[: len(header)] == header:
                pos = len(header)
                while pos + _RECORD.size <= len(raw):
                    word, crc = _RECORD.unpack_from(raw, pos)
                    if crc != _crc(word, self._salt):
                        break
                    pos += _RECORD.size
                    if word == _SYNC:
                        trusted.extend(tail)
                        tail.clear()
                        good_len = pos
                    elif word < self.manifest.chunk_count:
                        tail.append(word)
                    else:
                        break
            # else: a journal of another artifact or garbage: start over, trust nothing.
        for index in trusted:
            self._mark(index)
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fd, good_len)
        if good_len == len(header):
            os.pwrite(fd, header, 0)
        os.lseek(fd, good_len, os.SEEK_SET)
        self._journal = fd
        # Records after the last sync mark: re-hash, keep what still verifies.
        for index in tail:
            if not self._verified[index] and self._check_on_disk(index):
                self._mark(index)
                os.write(fd, _RECORD.pack(index, _crc(index, self._salt)))
        if tail:
            self.sync()

    def _check_on_disk(self, index: int) -> bool:
        start, end = self.manifest.chunk_range(index)
        data = os.pread(self._fd, end - start, start)
        return chunk_digest(data, self.manifest.chunk_size).hex() == self.manifest.chunks[index]

    def _mark(self, index: int) -> None:
        if not self._verified[index]:
            self._verified[index] = 1
            self._count += 1

    # -- public surface ----------------------------------------------------------

    @property
    def verified_count(self) -> int:
        """How many chunks are verified."""
        return self._count

    @property
    def complete(self) -> bool:
        """Every chunk is verified."""
        return self._count == self.manifest.chunk_count

    def has(self, index: int) -> bool:
        """Chunk ``index`` is verified."""
        return bool(self._verified[index])

    def bitfield(self) -> bytes:
        """Verified chunks as a bitfield, most significant bit first (as BitTorrent's)."""
        out = bytearray((self.manifest.chunk_count + 7) // 8)
        for i, v in enumerate(self._verified):
            if v:
                out[i >> 3] |= 0x80 >> (i & 7)
        return bytes(out)

    def missing(self) -> list[int]:
        """Indexes of chunks still to get."""
        return [i for i, v in enumerate(self._verified) if not v]

    def write_chunk(self, index: int, data: bytes | memoryview) -> None:
        """Verify ``data`` as chunk ``index`` and store it; raise :class:`IntegrityError` if bad.

        A bad chunk writes nothing, so earlier good data is never overwritten.
        """
        start, end = self.manifest.chunk_range(index)
        if len(data) != end - start:
            raise IntegrityError(
                f"chunk {index} of {self.manifest.path}: {len(data)} bytes, expected {end - start}"
            )
        actual = chunk_digest(data, self.manifest.chunk_size).hex()
        if actual != self.manifest.chunks[index]:
            raise IntegrityError(
                f"chunk {index} of {self.manifest.path}: digest {actual}, "
                f"expected {self.manifest.chunks[index]}"
            )
        if self._verified[index]:
            return
        try:
            written = os.pwrite(self._fd, data, start)
        except OSError as exc:  # disk full, I/O error: nothing recorded, the chunk stays missing
            raise StorageError(f"cannot store chunk {index}: {exc.strerror or exc}") from exc
        if written != len(data):
            raise StorageError(f"short write of chunk {index} ({written} of {len(data)} bytes)")
        self._append_record(index)
        self._mark(index)
        self._unsynced += len(data)
        if self._unsynced >= self._sync_bytes:
            self.sync()

    def _append_record(self, word: int) -> None:
        # A record is all or nothing: on a failed or short write, cut the journal back so
        # later records stay aligned (a torn record would hide every record after it).
        pos = os.lseek(self._journal, 0, os.SEEK_CUR)
        record = _RECORD.pack(word, _crc(word, self._salt))
        try:
            if os.write(self._journal, record) != len(record):
                raise OSError(28, "short write to the journal")
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._journal, pos)
                os.lseek(self._journal, pos, os.SEEK_SET)
            raise StorageError(f"cannot write the journal: {exc.strerror or exc}") from exc

    def sync(self) -> None:
        """Flush the data to disk, then seal every record so far with a sync mark."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise StorageError(f"cannot flush {self.data_path}: {exc.strerror or exc}") from exc
        self._append_record(_SYNC)
        try:
            os.fsync(self._journal)
        except OSError as exc:
            raise StorageError(f"cannot flush the journal: {exc.strerror or exc}") from exc
        self._unsynced = 0

    def read(self, start: int, length: int) -> bytes:
        """Bytes ``start .. start+length`` if every chunk they touch is verified."""
        if start < 0 or length < 0 or start + length > self.manifest.size:
            raise StorageError("read outside the artifact")
        if length == 0:
            return b""
        first = start // self.manifest.chunk_size
        last = (start + length - 1) // self.manifest.chunk_size
        if not all(self._verified[first : last + 1]):
            raise StorageError(f"range {start}+{length} is not fully verified")
        return os.pread(self._fd, length, start)

    def finalize(self, dest: str | os.PathLike[str]) -> Path:
        """Move the complete artifact to ``dest`` atomically; the journal goes away."""
        if not self.complete:
            raise StorageError(
                f"{self.manifest.path}: {self.manifest.chunk_count - self._count} chunks missing"
            )
        self.sync()
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.data_path, target)
        _fsync_dir(target.parent)
        self.close()
        self.journal_path.unlink(missing_ok=True)
        return target

    def close(self) -> None:
        """Release the file descriptors (the partial state stays on disk)."""
        for fd in (self._fd, self._journal):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fd = self._journal = -1

    def __enter__(self) -> PartialArtifact:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
