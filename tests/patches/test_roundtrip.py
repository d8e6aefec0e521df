"""Round trips on synthetic files and archives of every supported kind."""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
import zstandard

from patches import archive, methods
from patches import create as create_mod
from patches.apply import apply_patch, read_header
from patches.create import create_patch
from patches.errors import PatchTargetMismatchError
from patches.format import TRANSFORM_ARCHIVE, TRANSFORM_IDENTITY
from tests.patches.conftest import mutate, text_blob


def roundtrip(tmp_path: Path, old: bytes, new: bytes, name: str = "f") -> tuple[str, int]:
    a, b = tmp_path / f"old-{name}", tmp_path / f"new-{name}"
    a.write_bytes(old)
    b.write_bytes(new)
    p, out = tmp_path / f"{name}.wsp", tmp_path / f"out-{name}"
    info = create_patch(a, b, p)
    apply_patch(a, p, out)
    assert out.read_bytes() == new
    assert a.read_bytes() == old  # the base is never touched
    return info.transform, info.size


def make_zip(members: dict[str, bytes], levels: dict[str, int] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            level = (levels or {}).get(name, 6)
            method = zipfile.ZIP_STORED if level < 0 else zipfile.ZIP_DEFLATED
            z.writestr(
                zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)),
                data,
                method,
                None if level < 0 else level,
            )
        z.comment = b"a comment"
    return buf.getvalue()


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_ar(members: dict[str, bytes]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


SRC = {f"pkg/mod{i}.py": text_blob(i, 20_000) for i in range(6)}


def test_raw_small(tmp_path: Path) -> None:
    old = os.urandom(200_000)
    new = mutate(old, 1)
    transform, size = roundtrip(tmp_path, old, new)
    assert transform == "raw" and size < 3_000
    assert read_header(tmp_path / "f.wsp").transform == TRANSFORM_IDENTITY


def test_raw_identical_and_empty(tmp_path: Path) -> None:
    data = os.urandom(5000)
    assert roundtrip(tmp_path, data, data, "same")[1] < 400
    roundtrip(tmp_path, b"", data, "fromempty")
    roundtrip(tmp_path, data, b"", "toempty")


def test_raw_windows_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small windows so the big-file path runs on small data.
    monkeypatch.setattr(methods, "WINDOW", 64 << 10)
    monkeypatch.setattr(methods, "MARGIN", 16 << 10)
    monkeypatch.setattr(create_mod.archive, "MAX_EXPANDED", 100 << 10)
    old = os.urandom(600 << 10)
    new = mutate(old[: 300 << 10] + b"inserted" * 100 + old[300 << 10 :], 2, edits=20)
    new = new[: 64 << 10] + old[64 << 10 : 128 << 10] + new[128 << 10 :]  # one window unchanged
    transform, size = roundtrip(tmp_path, old, new)
    assert transform == "raw" and size < 60_000


def test_in_memory_windows_for_big_members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(create_mod, "BSDIFF_LIMIT", 50_000)
    monkeypatch.setattr(methods, "WINDOW", 40_000)
    old = os.urandom(150_000)
    new = mutate(old, 3)
    assert roundtrip(tmp_path, old, new)[0] == "raw"
    z_old = make_zip({"big.bin": old, **SRC})
    z_new = make_zip({"big.bin": new, **SRC})
    assert roundtrip(tmp_path, z_old, z_new, "zip")[0] == "archive"


def test_wheel_like_zip(tmp_path: Path) -> None:
    old = make_zip(
        {**SRC, "pkg-1.0.dist-info/RECORD": b"r" * 300, "data.bin": b"\0" * 100},
        {"pkg/mod1.py": 9, "pkg/mod2.py": 1, "data.bin": -1},
    )
    src2 = {k: mutate(v, 7, 2) for k, v in SRC.items()}
    new = make_zip(
        {
            **src2,
            "pkg-1.1.dist-info/RECORD": b"r" * 310,
            "new.py": text_blob(99, 5000),
            "data.bin": b"\0" * 100,
        },
        {"pkg/mod1.py": 9, "pkg/mod2.py": 1, "data.bin": -1},
    )
    transform, size = roundtrip(tmp_path, old, new)
    assert transform == "archive"
    assert size < len(new) * 0.1
    assert read_header(tmp_path / "f.wsp").transform == TRANSFORM_ARCHIVE


def test_unreproducible_deflate_falls_back(tmp_path: Path) -> None:
    """A stream deflated with settings we do not try stays raw; the patch still reproduces."""
    data = text_blob(5, 30_000)
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 2, zlib.Z_FILTERED)
    odd = c.compress(data) + c.flush()
    new = b"\x1f\x8b\x08\x00\0\0\0\0\0\xff" + odd + struct.pack("<II", zlib.crc32(data), len(data))
    assert gzip.decompress(new) == data
    ops = archive.expand(new, probe=True).ops
    assert any(op.kind == archive.RAW and op.out_len == len(odd) for op in ops)
    roundtrip(tmp_path, gzip.compress(data[:-100], mtime=0), new)


def test_targz_levels_and_names(tmp_path: Path) -> None:
    tar_old = make_tar(SRC)
    tar_new = make_tar({k: mutate(v, 11, 2) for k, v in SRC.items()})
    for level in (1, 6, 9):
        old = gzip.compress(tar_old, level, mtime=0)
        buf = io.BytesIO()
        with gzip.GzipFile("pkg-1.1.tar", "wb", level, buf, mtime=1) as g:
            g.write(tar_new)
        transform, size = roundtrip(tmp_path, old, buf.getvalue(), f"gz{level}")
        assert transform == "archive" and size < 5_000


def test_xz_and_zstd(tmp_path: Path) -> None:
    tar_old = make_tar(SRC)
    tar_new = make_tar({k: mutate(v, 12, 2) for k, v in SRC.items()})
    for check in (lzma.CHECK_CRC64, lzma.CHECK_CRC32, lzma.CHECK_NONE):
        old = lzma.compress(tar_old, check=check)
        new = lzma.compress(tar_new, check=check, preset=9)
        assert roundtrip(tmp_path, old, new, f"xz{check}")[0] == "archive"
    old = zstandard.ZstdCompressor(level=19).compress(tar_old)
    new = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(tar_new)
    transform, size = roundtrip(tmp_path, old, new, "zst")
    assert transform == "archive" and size < 5_000


def test_deb_like_ar(tmp_path: Path) -> None:
    def deb(src: dict[str, bytes]) -> bytes:
        return make_ar(
            {
                "debian-binary": b"2.0\n",
                "control.tar.gz": gzip.compress(make_tar({"control": b"Package: x\n"}), 9, mtime=0),
                "data.tar.xz": lzma.compress(make_tar(src)),
            }
        )

    old, new = deb(SRC), deb({k: mutate(v, 13, 2) for k, v in SRC.items()})
    transform, size = roundtrip(tmp_path, old, new)
    assert transform == "archive" and size < 6_000


def test_hostile_member_paths_fall_back(tmp_path: Path) -> None:
    old = make_zip({"../evil.py": SRC["pkg/mod1.py"]})
    new = make_zip({"../evil.py": mutate(SRC["pkg/mod1.py"], 1)})
    with pytest.raises(archive.ArchiveError):
        archive.expand(new, probe=True)
    assert roundtrip(tmp_path, old, new)[0] == "raw"
    assert not (tmp_path.parent / "evil.py").exists()
    for bad in ("/etc/passwd", "C:/x", "a/../../b"):
        with pytest.raises(archive.ArchiveError):
            archive._check_member_name(bad)


def test_zip_bomb_falls_back(tmp_path: Path) -> None:
    bomb_old = make_zip({"zeros": b"\0" * (20 << 20)}, {"zeros": 9})
    bomb_new = make_zip({"zeros": b"\0" * (20 << 20) + b"1"}, {"zeros": 9})
    with pytest.raises(archive.ArchiveError, match="bomb"):
        archive.expand(bomb_new, probe=True)
    assert archive.expand_base(bomb_old) == bomb_old
    assert roundtrip(tmp_path, bomb_old, bomb_new)[0] == "raw"


def test_malformed_archives_are_errors() -> None:
    z = make_zip(SRC)
    cases = [
        z[:200],  # truncated zip
        b"\x1f\x8b\x08\x00" + b"\0" * 4,  # truncated gzip header
        gzip.compress(b"x" * 1000)[:-6],  # truncated gzip trailer
        b"\x1f\x8b\x08\x04\0\0\0\0\0\0\xff\xff",  # FEXTRA past the end
        b"\x1f\x8b\x08\x08\0\0\0\0\0\0name",  # FNAME not terminated
        b"\x1f\x8b\x08\x00\0\0\0\0\0\0garbage!",  # bad deflate
        lzma.compress(b"x" * 1000)[:-40],  # truncated xz block
        b"\xfd7zXZ\x00\x00\x0f" + b"\0" * 30,  # unknown check
        b"\xfd7zXZ\x00",  # truncated xz
        b"\x28\xb5\x2f\xfd\xff\xff",  # bad zstd frame
        b"!<arch>\n" + b"name/           " + b"0" * 32 + b"notanumber" + b"`\n",
        b"!<arch>\n" + b"name/           " + b"0" * 32 + b"99999     " + b"`\n",
    ]
    for data in cases:
        with pytest.raises(archive.ArchiveError):
            archive.expand(data, probe=True)


def test_xz_other_filters_and_multi_frame_zstd(tmp_path: Path) -> None:
    data = make_tar(SRC)
    xz_x86 = lzma.compress(data, filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}])
    assert all(op.kind == archive.RAW for op in archive.expand(xz_x86, probe=True).ops)
    two = zstandard.ZstdCompressor().compress(data) * 2
    assert all(op.kind == archive.RAW for op in archive.expand(two, probe=True).ops)
    odd = zstandard.ZstdCompressor(level=5, write_content_size=False).compress(data)
    roundtrip(tmp_path, two, odd, "zst")
    gz_tail = gzip.compress(data, mtime=0) + b"\0" * 100
    roundtrip(tmp_path, gzip.compress(data[:-1000], mtime=0), gz_tail, "gztail")
    assert not archive.is_archive(b"plain")
    assert archive.member_key("numpy-2.1.0.dist-info/RECORD") == archive.member_key(
        "numpy-2.1.1.dist-info/RECORD"
    )


def test_speculative_diffs_redone_when_probing_changes_the_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diffs start on the unprobed expansion; a member that turns out unreproducible
    changes the stream, and the diffs are made again on the probed one."""
    monkeypatch.setattr(methods, "PARALLEL_MIN", 1000)
    tar_old, tar_new = make_tar(SRC), make_tar({k: mutate(v, 3, 2) for k, v in SRC.items()})
    c = zlib.compressobj(6, zlib.DEFLATED, -15, 2, zlib.Z_FILTERED)  # no level we try
    odd = c.compress(tar_new) + c.flush()
    odd_gz = (
        b"\x1f\x8b\x08\x00\0\0\0\0\0\xff"
        + odd
        + struct.pack("<II", zlib.crc32(tar_new), len(tar_new))
    )
    old = make_ar(
        {
            "control.tar.gz": gzip.compress(tar_old, mtime=0),
            "data.tar.gz": gzip.compress(tar_old, mtime=0),
        }
    )
    new = make_ar({"control.tar.gz": gzip.compress(tar_new, mtime=0), "data.tar.gz": odd_gz})
    guess, probed = archive.expand(new, probe=False), archive.expand(new, probe=True)
    assert guess.stream != probed.stream
    roundtrip(tmp_path, old, new)


def test_unchanged_zip_members_are_copied_from_the_old_file(tmp_path: Path) -> None:
    """Members whose compressed bytes did not change are neither expanded nor rebuilt."""
    old_members = {**SRC, "pkg/data.bin": os.urandom(5000)}
    new_members = {**old_members, "pkg/mod0.py": mutate(SRC["pkg/mod0.py"], 9, 3)}
    old, new = make_zip(old_members), make_zip(new_members)
    ops = archive.expand(new, probe=True, base=old).ops
    copied = {op.name for op in ops if op.kind == archive.BASE}
    assert copied == set(old_members) - {"pkg/mod0.py"}
    transform, size = roundtrip(tmp_path, old, new)
    assert transform == "archive" and size < 2000
    # A base that is not a zip (or is unreadable) offers nothing to copy.
    assert archive._zip_members(b"PK\x03\x04 broken") == {}
    assert archive._zip_members(b"not a zip") == {}


def test_speculation_does_not_change_the_patch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Diffs started before probing give the same patch as diffs after it (or none)."""
    monkeypatch.setattr(methods, "PARALLEL_MIN", 1000)
    old = make_zip(SRC)
    new = make_zip({k: mutate(v, 21, 3) for k, v in SRC.items()})
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    a.write_bytes(old)
    b.write_bytes(new)
    create_patch(a, b, tmp_path / "spec.wsp")
    monkeypatch.setattr(create_mod, "SPECULATE_MAX", 0)
    create_patch(a, b, tmp_path / "plain.wsp")
    assert (tmp_path / "spec.wsp").read_bytes() == (tmp_path / "plain.wsp").read_bytes()


def test_proven_compressions_are_what_rebuilding_computes(tmp_path: Path) -> None:
    """Every compression the probe keeps is exactly what the rebuild would compute.

    A .deb-like archive covers deflate (gzip member), a gzip file inside a tar, LZMA2
    around a nested tar, and zstd; the creator's self-check reuses these outputs.
    """
    inner = {**SRC, "doc/changelog.gz": gzip.compress(SRC["pkg/mod1.py"], 9, mtime=0)}
    deb = make_ar(
        {
            "debian-binary": b"2.0\n",
            "control.tar.gz": gzip.compress(make_tar({"control": b"Package: x\n"}), 9, mtime=0),
            "data.tar.xz": lzma.compress(make_tar(inner)),
            "extra.zst": zstandard.ZstdCompressor(level=19).compress(SRC["pkg/mod2.py"]),
        }
    )
    exp = archive.expand(deb, probe=True)
    assert {key[0] for key in exp.proven} >= {archive.DEFLATE, archive.LZMA2, archive.ZSTD}
    # Each kept output is a compressed range of the archive (or of its data tar).
    data_tar = make_tar(inner)
    assert all(out in deb or out in data_tar for out in exp.proven.values())
    assert b"".join(archive.rebuild(exp.ops, exp.stream)) == deb
    assert b"".join(archive.rebuild(exp.ops, exp.stream, proven=exp.proven)) == deb


def test_proven_outputs_are_trusted_so_a_wrong_one_fails_the_digest(tmp_path: Path) -> None:
    """The memo only replaces running the compressor: a wrong entry cannot slip through,
    the rebuilt file then fails the target digest and nothing is written."""
    old = lzma.compress(make_tar(SRC))
    new = lzma.compress(make_tar({k: mutate(v, 31, 2) for k, v in SRC.items()}))
    a, b, p = tmp_path / "a.xz", tmp_path / "b.xz", tmp_path / "p.wsp"
    a.write_bytes(old)
    b.write_bytes(new)
    create_patch(a, b, p)
    exp = archive.expand(new, probe=True)
    assert exp.proven
    forged = {key: bytes(len(out)) for key, out in exp.proven.items()}
    with pytest.raises(PatchTargetMismatchError):
        apply_patch(a, p, tmp_path / "out", proven=forged)
    assert not (tmp_path / "out").exists()
    apply_patch(a, p, tmp_path / "out", proven=exp.proven)
    assert (tmp_path / "out").read_bytes() == new


def test_creation_check_reuses_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The creator's self-check does not run the slow compressor a second time."""
    old = lzma.compress(make_tar(SRC))
    new = lzma.compress(make_tar({k: mutate(v, 32, 2) for k, v in SRC.items()}))
    a, b = tmp_path / "a.xz", tmp_path / "b.xz"
    a.write_bytes(old)
    b.write_bytes(new)
    made = []
    real = archive._lzma2_compressor

    def counting(preset: int, dict_size: int) -> lzma.LZMACompressor:
        made.append(preset)
        return real(preset, dict_size)

    monkeypatch.setattr(archive, "_lzma2_compressor", counting)
    create_patch(a, b, tmp_path / "p.wsp")
    probing = len(made)
    assert probing >= 1
    apply_patch(a, tmp_path / "p.wsp", tmp_path / "out")  # a client: compresses once more
    assert len(made) == probing + 1
