"""Nested archives (a tar inside xz inside ar, with .gz members), gzip-program members,
xz-compressed sections and the nested-recipe checks."""

from __future__ import annotations

import lzma
import random
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from patches import archive
from patches import format as fmt
from patches.errors import PatchFormatError
from tests.patches.conftest import mutate, text_blob
from tests.patches.test_roundtrip import SRC, make_ar, make_tar, roundtrip
from tests.prereq import needs

needs_gzip = needs(shutil.which("gzip") is None, "needs GNU gzip")


def gnu_gzip(data: bytes) -> bytes:
    return subprocess.run(["gzip", "-9n"], input=data, capture_output=True, check=True).stdout


def changelog(seed: int, entries: int) -> bytes:
    """Prose-like text; on such input GNU gzip's deflate output differs from zlib's."""
    rnd = random.Random(seed)
    vocab = [
        "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7)) for _ in range(3000)
    ]
    words = [rnd.choice(vocab) for _ in range(entries * 60)]
    return " ".join(words).encode()


def deb(src: dict[str, bytes], log: bytes) -> bytes:
    files = dict(src)
    files["usr/share/doc/x/changelog.gz"] = gnu_gzip(log)
    return make_ar(
        {
            "debian-binary": b"2.0\n",
            "control.tar.xz": lzma.compress(make_tar({"control": b"Package: x\n"})),
            "data.tar.xz": lzma.compress(make_tar(files)),
        }
    )


@needs_gzip
@pytest.mark.parametrize("zlib_reproduces", [True, False])
def test_deb_with_gnu_gzip_changelog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zlib_reproduces: bool
) -> None:
    if not zlib_reproduces:
        # Real Debian changelogs (gzip -9n) are not reproduced by zlib at any level;
        # synthetic text often is, so make zlib fail here to take the gzip-program path.
        monkeypatch.setattr(archive._Expander, "_find_deflate", lambda *_a: None)
    log = changelog(1, 200)
    old = deb(SRC, log)
    new = deb({k: mutate(v, 21, 2) for k, v in SRC.items()}, changelog(2, 3) + log)
    ops = archive.expand(new, probe=True).ops
    gz_kind = archive.DEFLATE if zlib_reproduces else archive.GZIP_CLI
    assert any(op.kind == gz_kind for op in ops)
    assert any(op.descendants for op in ops)
    transform, size = roundtrip(tmp_path, old, new)
    # The changelog alone is ~40 KB compressed; only its new entries may be in the patch.
    assert transform == "archive" and size < 8_000


@needs_gzip
def test_zlib_reproducible_gz_member_and_unreproducible_one(tmp_path: Path) -> None:
    import gzip as gz

    small = gz.compress(b"hello " * 50, 9, mtime=0)  # zlib made it: DEFLATE op
    odd = gnu_gzip(changelog(3, 50))[:-8] + b"\0" * 8  # bad trailer: kept RAW
    tar = make_tar({"a.gz": small, "b.gz": odd, "c.txt": b"x" * 600})
    ops = archive.expand(lzma.compress(tar), probe=True).ops
    kinds = [op.kind for op in ops]
    assert archive.DEFLATE in kinds and archive.GZIP_CLI not in kinds
    old = lzma.compress(make_tar({"a.gz": small, "c.txt": b"y" * 600}))
    assert roundtrip(tmp_path, old, lzma.compress(tar))[0] == "archive"
    # The base side expands without probing; a broken tar is just not nested.
    assert archive.expand(lzma.compress(b"\0" * 257 + b"ustar" + b"\0" * 300), probe=False)


def test_gzip_program_missing_or_bad_level(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PatchFormatError, match="gzip level"):
        archive.gzip_cli(b"x", 12)
    monkeypatch.setattr(archive.shutil, "which", lambda _name: None)
    with pytest.raises(PatchFormatError, match="needs the gzip program"):
        archive.gzip_cli(b"x", 9)


def test_nested_recipe_checks() -> None:
    child = archive.Op(archive.RAW, 3, 3)
    parent = archive.Op(archive.ZSTD, 3, 12, 3, 0, descendants=1)
    recipe = parent.encode() + child.encode()
    ops = archive.decode_recipe(recipe, 3, 12)
    assert archive.top_level(ops) == [ops[0]] and archive.leaves(ops) == [ops[1]]
    with pytest.raises(PatchFormatError, match="nesting out of range"):
        archive.decode_recipe(archive.Op(archive.ZSTD, 3, 12, 3, descendants=2).encode(), 3, 12)
    with pytest.raises(PatchFormatError, match="cover its range"):
        archive.decode_recipe(
            archive.Op(archive.ZSTD, 4, 12, 3, descendants=1).encode() + child.encode(), 4, 12
        )
    deep = b"".join(
        archive.Op(archive.ZSTD, 3, 12, 3, descendants=3 - i).encode() for i in range(3)
    )
    with pytest.raises(PatchFormatError, match="too deeply"):
        archive.decode_recipe(deep + child.encode(), 3, 12)
    with pytest.raises(PatchFormatError, match="bad recipe entry"):
        archive.decode_recipe(archive.Op(archive.RAW, 3, 3, descendants=1).encode(), 3, 3)
    # A nested op rebuilds its plain input from its children, then recompresses it.
    assert b"".join(archive.rebuild(ops, b"abc")) == archive._zstd_compress(b"abc", 3, 0)
    wrong = archive.Op(archive.ZSTD, 3, 13, 3, 0, descendants=1)
    with pytest.raises(PatchFormatError, match="wrong size"):
        list(archive.rebuild([wrong, child], b"abc"))


@needs_gzip
def test_gzip_op_rebuild() -> None:
    gz = gnu_gzip(b"abc")
    assert list(archive.rebuild([archive.Op(archive.GZIP_CLI, 3, len(gz), 9)], b"abc")) == [gz]


def test_xz_sections() -> None:
    data = bytes(range(256)) * 64 + text_blob(5, 50_000)
    packed = fmt.compress(data)
    assert fmt.decompress(packed, len(data), "s") == data
    xz = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE)
    assert fmt.decompress(xz, len(data), "s") == data
    with pytest.raises(PatchFormatError, match="truncated"):
        fmt.decompress(xz[:-20], len(data), "s")
    with pytest.raises(PatchFormatError):
        fmt.decompress(xz, len(data) - 1, "s")
    with pytest.raises(PatchFormatError):
        fmt.decompress(fmt.XZ_MAGIC + b"garbage" * 4, 10, "s")
    assert not archive._is_tar(b"short")


def test_failed_archive_verification_falls_back_to_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patches import create as create_mod

    old = lzma.compress(make_tar(SRC))
    new = lzma.compress(make_tar({k: mutate(v, 31, 2) for k, v in SRC.items()}))
    monkeypatch.setattr(create_mod, "_reproduces", lambda *_a: False)
    assert roundtrip(tmp_path, old, new)[0] == "raw"


def test_xz_recipe() -> None:
    from patches.apply import decompress_bounded

    raw = b"".join(archive.Op(archive.RAW, i, i).encode() for i in range(2000))
    xz = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE)
    assert decompress_bounded(xz) == raw
    with pytest.raises(PatchFormatError):
        decompress_bounded(fmt.XZ_MAGIC + b"junk" * 8)


def test_parallel_bsdiff_matches_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    from patches import methods

    monkeypatch.setattr(methods, "PARALLEL_MIN", 1000)
    jobs = [(text_blob(i, 3000), mutate(text_blob(i, 3000), i)) for i in range(3)]
    jobs.append((b"", b"new"))
    jobs.append((b"same", b"same"))
    assert methods.parallel_bsdiff(jobs, 2) == methods.parallel_bsdiff(jobs, 1)


def test_threaded_rebuild_stops_at_a_bad_entry() -> None:
    """An entry that rebuilds to the wrong size fails the rebuild, with members pending."""
    from patches import archive

    plain = [text_blob(i, 5000) for i in range(12)]
    ops = [
        archive.Op(archive.DEFLATE, len(p), len(zlib.compress(p, 6)) - 6, 6, 8, -15) for p in plain
    ]
    bad = ops[3]
    ops[3] = archive.Op(bad.kind, bad.exp_len, bad.out_len + 1, bad.p1, bad.p2, bad.p3)
    pieces = archive.rebuild(ops, b"".join(plain))
    assert len(next(pieces)) == ops[0].out_len
    with pytest.raises(PatchFormatError, match="wrong size"):
        list(pieces)
