"""PartialArtifact over garbage journals: never a chunk reported verified that does not verify."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fuzz import targets
from tests.fuzz.conftest import budget
from webseed.storage import _MAGIC, _RECORD, PartialArtifact, _crc


@budget(100)
@given(st.binary(max_size=300))
def test_garbage_journal(data: bytes) -> None:
    targets.journal(data)


@budget(100)
@given(st.integers(0, 255), st.lists(st.integers(0, 7), max_size=12), st.binary(max_size=20))
def test_unsynced_records_for_bad_data(genuine: int, indexes: list[int], tail: bytes) -> None:
    # Well-formed records (right salt) with no sync mark: each chunk is re-hashed on reopen,
    # and only chunks whose data really verifies are kept.
    _, m, _ = targets._journal_fixture()
    salt = bytes.fromhex(m.digest)
    records = b"".join(_RECORD.pack(i, _crc(i, salt)) for i in indexes)
    targets.journal(bytes([genuine, 1]) + records + tail)


def test_genuine_records_are_kept(tmp_path: Path) -> None:
    # The properties above would pass vacuously if nothing were ever kept.
    _, m, content = targets._journal_fixture()
    salt = bytes.fromhex(m.digest)
    data = bytearray(content)
    data[-1] ^= 1  # the last chunk is corrupt on disk
    (tmp_path / "a.bin").write_bytes(bytes(data))
    records = b"".join(_RECORD.pack(i, _crc(i, salt)) for i in range(m.chunk_count))
    (tmp_path / "a.bin.journal").write_bytes(_MAGIC + salt + records)
    with PartialArtifact(tmp_path / "a.bin", m) as part:
        assert part.missing() == [m.chunk_count - 1]
