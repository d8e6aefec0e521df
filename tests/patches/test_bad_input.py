"""Hostile and broken patches: clear errors, nothing replaced, the base intact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from patches import format as fmt
from patches.apply import apply_patch, decompress_bounded
from patches.create import create_patch
from patches.errors import (
    PatchBaseMismatchError,
    PatchFormatError,
    PatchTargetMismatchError,
)
from patches.format import HEADER, Header, Part
from patches.methods import PartApplier
from tests.patches.conftest import mutate
from webseed.errors import IntegrityError, WebseedError


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    old, new, patch = tmp_path / "old", tmp_path / "new", tmp_path / "p.wsp"
    data = os.urandom(100_000)
    old.write_bytes(data)
    new.write_bytes(mutate(data, 4))
    create_patch(old, new, patch)
    return old, new, patch


def _rewrite(patch: Path, header: Header, body: bytes, fix_body_sha: bool = True) -> None:
    if fix_body_sha:
        header = Header(**{**header.__dict__, "body_sha256": hashlib.sha256(body).digest()})
    patch.write_bytes(header.encode() + body)


def _split(patch: Path) -> tuple[Header, bytes]:
    raw = patch.read_bytes()
    return Header.decode(raw), raw[HEADER.size :]


def _refused(old: Path, patch: Path, dest: Path, exc: type[Exception]) -> None:
    before = old.read_bytes()
    with pytest.raises(exc):
        apply_patch(old, patch, dest)
    assert not dest.exists()
    assert old.read_bytes() == before
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]


def test_other_base(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, patch = pair
    other = tmp_path / "other"
    data = old.read_bytes()
    other.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # always differs in the last byte
    _refused(other, patch, tmp_path / "out", PatchBaseMismatchError)
    other.write_bytes(b"short")
    _refused(other, patch, tmp_path / "out", PatchBaseMismatchError)


def test_truncated_and_corrupted(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, patch = pair
    raw = patch.read_bytes()
    bad = tmp_path / "bad.wsp"
    for cut in (0, 10, HEADER.size - 1, HEADER.size + 5, len(raw) - 1):
        bad.write_bytes(raw[:cut])
        _refused(old, bad, tmp_path / "out", PatchFormatError)
    flipped = bytearray(raw)
    flipped[-3] ^= 0x40
    bad.write_bytes(bytes(flipped))
    _refused(old, bad, tmp_path / "out", PatchFormatError)
    bad.write_bytes(b"NOTAPATCH" + raw[9:])
    _refused(old, bad, tmp_path / "out", PatchFormatError)


def test_wrong_target_digest(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    old, _, patch = pair
    header, body = _split(patch)
    _rewrite(patch, Header(**{**header.__dict__, "target_sha256": b"\0" * 32}), body)
    dest = tmp_path / "out"
    dest.write_bytes(b"previous")  # an existing file is not replaced either
    with pytest.raises(PatchTargetMismatchError) as err:
        apply_patch(old, patch, dest)
    assert isinstance(err.value, IntegrityError) and isinstance(err.value, WebseedError)
    assert dest.read_bytes() == b"previous"


def test_header_fields_validated(pair: tuple[Path, Path, Path]) -> None:
    _, _, patch = pair
    header, _body = _split(patch)
    raw = header.encode()
    with pytest.raises(PatchFormatError, match="version"):
        Header.decode(raw[:8] + b"\0\x63" + raw[10:])
    with pytest.raises(PatchFormatError, match="transform"):
        Header.decode(raw[:10] + b"\x07" + raw[11:])
    bad = {
        "base_size": 1 << 50,
        "target_stream_len": 5,
        "part_count": fmt.MAX_PARTS + 1,
        "ctrl_len": (fmt.MAX_STREAM + 1, 1),
    }
    for key, value in bad.items():
        with pytest.raises(PatchFormatError):
            Header.decode(Header(**{**header.__dict__, key: value}).encode())
    arch = Header(
        **{
            **header.__dict__,
            "transform": fmt.TRANSFORM_ARCHIVE,
            "base_stream_len": fmt.MAX_STREAM + 1,
        }
    )
    with pytest.raises(PatchFormatError, match="expanded"):
        Header.decode(arch.encode())


def test_body_edits_with_valid_checksum(pair: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A malicious patch can carry a valid body checksum: structure checks still hold."""
    old, _, patch = pair
    header, body = _split(patch)
    dest = tmp_path / "out"
    cases = [
        Header(
            **{
                **header.__dict__,
                "target_stream_len": header.target_stream_len + 1,
                "target_size": header.target_size + 1,
            }
        ),
        Header(**{**header.__dict__, "part_count": header.part_count + 1}),
        Header(**{**header.__dict__, "ctrl_len": (header.ctrl_len[0] + 24, header.ctrl_len[1])}),
        Header(**{**header.__dict__, "diff_len": (0, header.diff_len[1])}),
    ]
    for h in cases:
        _rewrite(patch, h, body)
        _refused(old, patch, dest, PatchFormatError)


def test_part_checks() -> None:
    ap = PartApplier(b"", b"", b"", base_len=10)
    for part in (
        Part(fmt.METHOD_COPY, 5, 6, 6),
        Part(fmt.METHOD_COPY, 0, 5, 6),
        Part(99, 0, 0, 0),
        Part(fmt.METHOD_ZSTD_WINDOW, 0, 0, 1 << 30),
    ):
        with pytest.raises(PatchFormatError):
            ap.check_part(part)
    with pytest.raises(PatchFormatError, match="partial"):
        PartApplier(b"x", b"", b"", 0)
    with pytest.raises(PatchFormatError, match="too short"):
        ap.apply(Part(fmt.METHOD_BSDIFF, 0, 10, 5, 1), b"0" * 10, b"")
    from bsdiff4.core import encode_int64

    bad_ctrl = encode_int64(20) + encode_int64(0) + encode_int64(0)
    with pytest.raises(PatchFormatError, match="out of range"):
        PartApplier(bad_ctrl, b"", b"", 10).apply(
            Part(fmt.METHOD_BSDIFF, 0, 10, 20, 1), b"0" * 10, b""
        )
    ok_ctrl = encode_int64(2) + encode_int64(1) + encode_int64(0)
    with pytest.raises(PatchFormatError, match="length"):
        PartApplier(ok_ctrl, b"\0\0", b"x", 10).apply(
            Part(fmt.METHOD_BSDIFF, 0, 10, 9, 1), b"0" * 10, b""
        )
    with pytest.raises(PatchFormatError, match="stream too short"):
        PartApplier(ok_ctrl, b"", b"", 10).apply(
            Part(fmt.METHOD_BSDIFF, 0, 10, 3, 1), b"0" * 10, b""
        )
    with pytest.raises(PatchFormatError, match="zstd window"):
        ap.apply(Part(fmt.METHOD_ZSTD_WINDOW, 0, 10, 5, 3), b"0" * 10, b"bad")
    with pytest.raises(PatchFormatError, match="declares 3 bytes"):
        ap.apply(Part(fmt.METHOD_ZSTD_WINDOW, 0, 0, 5, 3), b"", fmt.compress(b"abc"))
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(b"abc")
    with pytest.raises(PatchFormatError, match="length mismatch"):
        ap.apply(Part(fmt.METHOD_ZSTD_WINDOW, 0, 0, 5, 3), b"", no_size)


def test_sections_and_recipe() -> None:
    with pytest.raises(PatchFormatError):
        fmt.decompress(b"junk", 10, "x")
    with pytest.raises(PatchFormatError):
        fmt.decompress(b"junk", 0, "x")
    with pytest.raises(PatchFormatError):
        fmt.decompress(fmt.compress(b"abc"), 4, "x")
    assert fmt.decompress(b"", 0, "x") == b""
    with pytest.raises(PatchFormatError):
        decompress_bounded(b"junk")
    assert decompress_bounded(b"") == b""
    from patches import archive

    with pytest.raises(PatchFormatError):
        archive.decode_recipe(b"x", 0, 0)
    op = archive.Op(archive.RAW, 3, 4)
    with pytest.raises(PatchFormatError):
        archive.decode_recipe(op.encode(), 3, 4)
    with pytest.raises(PatchFormatError):
        archive.decode_recipe(archive.Op(9, 3, 3).encode(), 3, 3)
    for bad in (
        archive.Op(archive.DEFLATE, 3, 1, 99, 8, -15),
        archive.Op(archive.LZMA2, 3, 1, 99, p4=1),
        archive.Op(archive.ZSTD, 3, 1, 1),
        archive.Op(archive.RAW, 3, 4),
    ):
        with pytest.raises(PatchFormatError):
            list(archive.rebuild([bad], b"abc"))


def test_copies_from_the_old_file_are_bounded() -> None:
    """BASE entries: top level only, no stream bytes, inside the old file."""
    from patches import archive

    ok = archive.Op(archive.BASE, 0, 4, p4=2)
    assert archive.decode_recipe(ok.encode(), 0, 4, base_size=6) == [ok]
    assert list(archive.rebuild([ok], b"", base=b"abcdef")) == [b"cdef"]
    for recipe, base_size in (
        (archive.Op(archive.BASE, 0, 4, p4=3).encode(), 6),  # runs past the old file
        (archive.Op(archive.BASE, 0, 4).encode(), 0),  # no old file
        (archive.Op(archive.BASE, 1, 4).encode() + b"", 6),  # claims stream bytes
        (archive.Op(archive.BASE, 0, 4, descendants=1).encode(), 6),
        (  # inside a container
            archive.Op(archive.ZSTD, 0, 9, 3, descendants=1).encode()
            + archive.Op(archive.BASE, 0, 4).encode(),
            6,
        ),
    ):
        with pytest.raises(PatchFormatError):
            archive.decode_recipe(recipe, 0, 4, base_size)
    with pytest.raises(PatchFormatError, match="outside the old file"):
        list(archive.rebuild([archive.Op(archive.BASE, 0, 4, p4=5)], b"", base=b"abcdef"))


def test_forged_zstd_frame_sizes_are_refused_before_allocating() -> None:
    """A zstd frame declaring a huge content size (found by the fuzzer: MemoryError)."""
    from patches import methods

    forged = (
        b"(\xb5/\xfd\xf0)\xc5\x00\x00\xc2\x01\x04\t\xf0Y\x03FGB\xaaT)\xff\xf1\x9f~)"
        b"\x04\x01\x00\x07\xc0\x02"
    )
    with pytest.raises(PatchFormatError, match="declares"):
        fmt.decompress(forged, 41, "part table")
    with pytest.raises(PatchFormatError, match="declares"):
        methods._window_decompress(b"", forged, 41)
    with pytest.raises(PatchFormatError, match="corrupt zstd frame header"):
        fmt.decompress(b"(\xb5/\xfd", 41, "part table")
    good = fmt.compress(b"x" * 1000)
    assert fmt.decompress(good, 1000, "ok") == b"x" * 1000
