from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_random
from webseed.errors import IntegrityError, StorageError
from webseed.manifest import Manifest, build_manifest
from webseed.storage import PartialArtifact

CHUNK = 64 * 1024


@pytest.fixture
def source(tmp_path: Path) -> tuple[bytes, Manifest]:
    f = write_random(tmp_path / "src.bin", 10 * CHUNK + 123)
    return f.read_bytes(), build_manifest(f, "a/src.bin", chunk_size=CHUNK)


def chunk(data: bytes, m: Manifest, i: int) -> bytes:
    s, e = m.chunk_range(i)
    return data[s:e]


def test_write_verify_finalize(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    data, m = source
    with PartialArtifact(tmp_path / "part" / "x.data", m) as part:
        assert (tmp_path / "part" / "x.data").stat().st_size == m.size
        for i in reversed(range(m.chunk_count)):
            part.write_chunk(i, chunk(data, m, i))
        part.write_chunk(0, chunk(data, m, 0))  # again: a no-op
        assert part.complete and part.missing() == []
        assert part.bitfield() == b"\xff\xe0"
        assert part.read(5, 100) == data[5:105] and part.read(0, 0) == b""
        out = part.finalize(tmp_path / "out" / "src.bin")
    assert out.read_bytes() == data
    assert not (tmp_path / "part" / "x.data.journal").exists()


def test_bad_chunk_never_written(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    data, m = source
    part = PartialArtifact(tmp_path / "x.data", m)
    part.write_chunk(2, chunk(data, m, 2))
    bad = bytearray(chunk(data, m, 2))
    bad[0] ^= 0xFF
    with pytest.raises(IntegrityError, match="digest"):
        part.write_chunk(3, bytes(bad))
    with pytest.raises(IntegrityError, match="bytes, expected"):
        part.write_chunk(3, b"short")
    assert not part.has(3) and part.has(2) and part.verified_count == 1
    with pytest.raises(StorageError, match="not fully verified"):
        part.read(2 * CHUNK, CHUNK + 1)
    with pytest.raises(StorageError, match="outside"):
        part.read(m.size - 1, 2)
    with pytest.raises(StorageError, match="missing"):
        part.finalize(tmp_path / "out")
    part.close()
    part.close()


def test_resume_keeps_verified_chunks(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    data, m = source
    part = PartialArtifact(tmp_path / "x.data", m, sync_bytes=2 * CHUNK)
    for i in (0, 1, 2, 5, 7):
        part.write_chunk(i, chunk(data, m, i))
    part.close()  # no final sync: 5 and 7 are after the last sync mark
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.missing() == [3, 4, 6, 8, 9, 10]
    again.close()


def test_unsynced_records_are_rehashed(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    data, m = source
    part = PartialArtifact(tmp_path / "x.data", m, sync_bytes=10**9)
    part.write_chunk(0, chunk(data, m, 0))
    part.sync()
    part.write_chunk(4, chunk(data, m, 4))
    part.close()
    # As if the OS crashed before chunk 4's bytes reached the disk: its record survives.
    with open(tmp_path / "x.data", "r+b") as f:
        f.seek(4 * CHUNK)
        f.write(bytes(CHUNK))
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.has(0) and not again.has(4)
    again.close()


def test_torn_and_foreign_journals(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    data, m = source
    part = PartialArtifact(tmp_path / "x.data", m)
    part.write_chunk(1, chunk(data, m, 1))
    part.sync()
    part.close()
    journal = tmp_path / "x.data.journal"
    with open(journal, "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn record
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.has(1)
    again.close()
    with open(journal, "ab") as f:
        f.write(b"\x09\x00\x00\x00\x00\x00\x00\x00")  # bad checksum: ignored from here on
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.missing() == [i for i in range(m.chunk_count) if i != 1]
    again.close()
    journal.write_bytes(b"WSJ1" + bytes(32) + b"garbage!")
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.verified_count == 0
    again.close()


def test_out_of_range_record_stops_reading(tmp_path: Path, source: tuple[bytes, Manifest]) -> None:
    import binascii
    import struct

    _data, m = source
    part = PartialArtifact(tmp_path / "x.data", m)
    part.close()
    salt = bytes.fromhex(m.digest)
    word = 999
    crc = binascii.crc32(struct.pack("<I", word) + salt) & 0xFFFFFFFF
    with open(tmp_path / "x.data.journal", "ab") as f:
        f.write(struct.pack("<II", word, crc))
    again = PartialArtifact(tmp_path / "x.data", m)
    assert again.verified_count == 0
    again.close()


WRITER = r"""
import sys
from webseed.manifest import Manifest
from webseed.storage import PartialArtifact
m = Manifest.parse(open(sys.argv[1], "rb").read())
data = open(sys.argv[2], "rb").read()
part = PartialArtifact(sys.argv[3], m, sync_bytes=3 * m.chunk_size)
print("ready", flush=True)
while True:
    for i in range(m.chunk_count):
        s, e = m.chunk_range(i)
        part.write_chunk(i, data[s:e])
"""


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.02])
def test_sigkill_at_any_instant(tmp_path: Path, delay: float) -> None:
    src = write_random(tmp_path / "big.bin", 400 * 16384, seed=9)
    m = build_manifest(src, "big.bin", chunk_size=16384)
    (tmp_path / "m.json").write_bytes(m.encode())
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "m.json"), str(src), str(tmp_path / "p")],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    part = PartialArtifact(tmp_path / "p", m)
    data = src.read_bytes()
    # Every chunk reported verified really is on disk and matches.
    for i in range(m.chunk_count):
        if part.has(i):
            s, e = m.chunk_range(i)
            assert part.read(s, e - s) == data[s:e]
    part.close()
