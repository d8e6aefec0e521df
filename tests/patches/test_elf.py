"""The ELF method: real shared libraries (built here by gcc, and from real .debs), hostile input."""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import bsdiff4.core
import pytest
import zstandard

from patches import elf, methods
from patches.apply import apply_patch, read_header
from patches.create import create_patch
from patches.errors import PatchFormatError
from patches.format import (
    HEADER,
    METHOD_BSDIFF,
    METHOD_ELF,
    PART,
    TRANSFORM_ARCHIVE,
    Header,
    Part,
    decompress,
)
from tests.patches.conftest import apt_pair, mutate, text_blob
from tests.patches.test_roundtrip import make_tar, make_zip
from tests.prereq import missing

# A small library with what rebuilt C code is made of: calls between functions, calls
# through the PLT into libc, RIP-relative data and strings, a table of function pointers
# (relocated pointers in .data.rel.ro), .eh_frame for every function.
LIB_V1 = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static const char *names[] = {"alpha", "beta", "gamma", "delta"};
static int counter;
int add(int a, int b) { counter++; return a + b; }
int mul(int a, int b) { counter++; return a * b; }
static int helper(const char *s) { return (int)strlen(s) * 3; }
char *greet(const char *who) {
    char *out = malloc(strlen(who) + 16);
    sprintf(out, "hello %s %d", who, helper(who));
    return out;
}
int (*ops[])(int, int) = {add, mul};
int apply(int i, int a, int b) { return ops[i & 1](a, b) + helper(names[i & 3]); }
%EXTRA%
int total(int n) {
    int t = 0;
    for (int i = 0; i < n; i++) t += apply(i, i, n) + add(t, i);
    return t + counter;
}
const char *name_of(int i) { return names[i & 3]; }
int classify(int c, int x) {  /* dense switch: a jump table in .rodata */
    switch (c) {
    case 0: return x + 1;
    case 1: return add(x, 7) * 3;
    case 2: return mul(x, x) - 5;
    case 3: return helper(names[x & 3]);
    case 4: return x ^ 0x55;
    case 5: return total(x) + 2;
    case 6: return x << 3;
    case 7: return apply(x, x, 2) - 1;
    default: return -1;
    }
}
"""
# Version 2 inserts a function (and a new libc import) in the middle: everything after
# it moves, the PLT gains a stub, the symbol table an entry.
EXTRA_V2 = r"""
int checked_len(const char *s) {
    size_t n = strnlen(s, 4096);
    if (n > 1000) abort();
    return (int)n + mul(2, 3);
}
"""


def _gcc(tmp_path: Path, name: str, source: str) -> bytes:
    cc = shutil.which("gcc")
    if cc is None:
        missing("gcc (to build the test libraries)")
    src, out = tmp_path / f"{name}.c", tmp_path / f"{name}.so"
    src.write_text(source)
    subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)], check=True, timeout=60
    )
    return out.read_bytes()


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    d = tmp_path_factory.mktemp("elf")
    return (
        _gcc(d, "v1", LIB_V1.replace("%EXTRA%", "")),
        _gcc(d, "v2", LIB_V1.replace("%EXTRA%", EXTRA_V2)),
    )


def _size(streams: tuple[bytes, ...]) -> int:
    cctx = zstandard.ZstdCompressor(level=19)
    return sum(len(cctx.compress(s)) for s in streams if s)


def _roundtrip(old: bytes, new: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    made = elf.diff(old, new)
    assert made is not None
    pairing, ctrl, diff, extra = made
    rebuilt = bsdiff4.core.patch(elf.adjusted_base(old, pairing, ctrl), len(new), ctrl, diff, extra)
    assert rebuilt == new
    return made


def test_references_of_a_built_library(libs: tuple[bytes, bytes]) -> None:
    old, _ = libs
    image = elf.parse(old)
    assert image is not None and elf.is_elf(old)
    refs = elf.references(old, image)
    kinds = {kind for _, kind, _ in refs}
    assert {elf.REL32, elf.ABS64, elf.DATAREL32, elf.OFF64, elf.INDEX32} <= kinds
    rodata = next(sec for sec in image.sections if sec.name == b".rodata")
    table = [
        f
        for f, k, _ in refs
        if k == elf.DATAREL32 and rodata.offset <= f < rodata.offset + rodata.size
    ]
    assert len(table) >= 8  # the switch's jump table
    # Sorted, inside the file, not overlapping.
    ends = [f + (8 if k in (elf.ABS64, elf.OFF64) else 4) for f, k, _ in refs]
    assert all(refs[i + 1][0] >= ends[i] for i in range(len(refs) - 1))
    assert ends[-1] <= len(old)


def test_moved_code_costs_less_than_bsdiff(libs: tuple[bytes, bytes], tmp_path: Path) -> None:
    old, new = libs
    made = _roundtrip(old, new)
    plain = bsdiff4.core.diff(old, new)
    assert _size(made) < _size(plain)
    # Through the patch file: the part is an ELF part and the result byte-exact.
    a, b, p, out = (tmp_path / n for n in ("a.so", "b.so", "p.wsp", "out.so"))
    a.write_bytes(old)
    b.write_bytes(new)
    methods_used = _create_and_apply(a, b, p, out)
    assert METHOD_ELF in methods_used


def _create_and_apply(a: Path, b: Path, p: Path, out: Path) -> set[int]:
    from patches.create import create_patch

    create_patch(a, b, p)
    apply_patch(a, p, out)
    assert out.read_bytes() == b.read_bytes()
    return {part.method for part in _parts(p)}


def _parts(patch: Path) -> list[Part]:
    """The part table of a patch file."""
    data = patch.read_bytes()
    h = Header.decode(data)
    pos = HEADER.size + h.recipe_len + h.ctrl_len[1] + h.diff_len[1] + h.extra_len[1]
    table = decompress(data[pos : pos + h.parts_len], h.part_count * PART.size, "parts")
    return [Part(*PART.unpack_from(table, i * PART.size)) for i in range(h.part_count)]


def test_identical_and_unrelated(libs: tuple[bytes, bytes]) -> None:
    old, _ = libs
    _roundtrip(old, old)
    # Not ELF on one side: the method does not apply, the unit is plain bsdiff.
    assert elf.diff(old, b"plain text" * 100) is None
    assert methods.unit_streams(old, b"plain text")[0] == METHOD_BSDIFF


def test_libraries_inside_a_tar(libs: tuple[bytes, bytes]) -> None:
    """A .deb's data.tar holds several libraries: each old one is paired with its new one."""
    old, new = libs
    a = make_tar({"usr/lib/liba.so": old, "doc": b"x" * 700, "usr/lib/libb.so": old[::-1] + old})
    b = make_tar({"usr/lib/liba.so": new, "doc": b"y" * 700, "usr/lib/libb.so": old[::-1] + new})
    assert len(elf.find_images(a)) == 2
    pairing, *_ = _roundtrip(a, b)
    decoded = elf.decode_pairing(pairing, 2)
    assert all(p is not None for p in decoded)
    # An old image with no counterpart is left alone (pairing None).
    c = make_tar({"doc": b"z" * 5000, "usr/lib/liba.so": new})
    _roundtrip(make_tar({"x": old, "y": old}), c)


def test_hostile_images_never_crash(libs: tuple[bytes, bytes]) -> None:
    """Truncated and corrupted ELF files: parsing gives up or finds what it can, no error."""
    old, new = libs
    rnd = random.Random(7)
    header_end = 64 + 56 * struct.unpack_from("<H", old, 56)[0]
    for i in range(150):
        data = bytearray(old)
        if i % 3 == 0:
            data = data[: rnd.randrange(len(data))]
        else:  # corrupt headers (mostly) and some random bytes anywhere
            for _ in range(8):
                pos = rnd.randrange(header_end) if rnd.random() < 0.7 else rnd.randrange(len(data))
                data[pos] = rnd.randrange(256)
            shoff = struct.unpack_from("<Q", data, 40)[0]
            if shoff < len(data) - 64 and i % 3 == 1:  # and the section table
                for _ in range(20):
                    data[shoff + rnd.randrange(min(len(data) - shoff, 64 * 30))] = rnd.randrange(
                        256
                    )
        blob = bytes(data)
        image = elf.parse(blob)
        if image is not None:
            elf.references(blob, image)
        made = elf.diff(blob, new)
        if made is not None:  # whatever was found, the round trip is exact
            pairing, ctrl, d, e = made
            rebuilt = bsdiff4.core.patch(
                elf.adjusted_base(blob, pairing, ctrl), len(new), ctrl, d, e
            )
            assert rebuilt == new
    assert elf.parse(b"\x7fELF\x02\x01" + b"\0" * 10) is None
    assert elf.parse(b"not an elf" * 10) is None
    assert elf.find_images(b"\x7fELF\x02\x01" * 20) == []


def test_bad_pairings_are_format_errors(libs: tuple[bytes, bytes]) -> None:
    old, new = libs
    pairing, ctrl, d, e = _roundtrip(old, new)
    enc = bsdiff4.core.encode_int64
    for bad in (
        b"",  # no entry for the base's image
        pairing + enc(0) * 3,  # one entry too many
        enc(5) + enc(0) + enc(1),  # a start with no load segments
        enc(1) + enc(2) + enc(9) + enc(0) * 3,  # fewer load triples than announced
        enc(1) + enc(1) + enc(9) + enc(-1) + enc(0) + enc(0),  # negative load offset
        enc(1) + enc(1000) + enc(9),  # too many load segments
    ):
        with pytest.raises(ValueError):
            elf.adjusted_base(old, bad, ctrl)
    # Through the part applier: the same cases are PatchFormatErrors.
    n = len(ctrl) // 24
    for b_count, prefix in ((0, b""), (1, enc(7) + enc(0) + enc(0))):
        applier = methods.PartApplier(prefix + ctrl, d, e, len(old))
        part = Part(METHOD_ELF, 0, len(old), len(new), n, b_count)
        with pytest.raises(PatchFormatError):
            applier.check_part(part)
            applier.apply(part, old, b"")
    applier = methods.PartApplier(pairing[:24], d, e, len(old))
    with pytest.raises(PatchFormatError, match="too short"):
        applier.apply(Part(METHOD_ELF, 0, len(old), len(new), n, 2), old, b"")


def test_real_library_from_debian() -> None:
    """libexpat's shared library from two Debian security updates (real rebuilt code)."""
    old_deb, new_deb = apt_pair("libexpat1")
    old, new = _deb_member(old_deb, "libexpat.so."), _deb_member(new_deb, "libexpat.so.")
    made = _roundtrip(old, new)
    assert _size(made) < _size(bsdiff4.core.diff(old, new))


def _deb_member(deb: Path, stem: str) -> bytes:
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        missing("dpkg-deb (to unpack the test .debs)")
    tar = subprocess.run([dpkg, "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
        for m in t.getmembers():
            if m.isfile() and stem in m.name:
                f = t.extractfile(m)
                assert f is not None
                return f.read()
    raise AssertionError(f"{stem} not in {deb}")


def test_sub_bytes_and_alignment() -> None:
    rnd = random.Random(3)
    for n in (0, 1, 7, 300):
        a = bytes(rnd.randrange(256) for _ in range(n))
        b = bytes(rnd.randrange(256) for _ in range(n))
        assert elf._sub_bytes(a, b) == bytes((x - y) & 255 for x, y in zip(a, b, strict=True))
    # Overlapping matches: the longer one decides; outside any match, the one before.
    align = elf.Alignment([(0, 100, 10), (5, 500, 50), (200, 50, 5)])
    assert align.map(2) == 102
    assert align.map(7) == 502
    assert align.map(60) == 555  # after [5, 55): as the nearest match before
    assert align.map(202) == 52
    assert elf.Alignment([]).map(3) is None


def test_unpaired_image_is_left_alone(libs: tuple[bytes, bytes]) -> None:
    old, new = libs
    _, ctrl, _, _ = _roundtrip(old, new)
    none = elf.encode_pairing([None])
    assert elf.decode_pairing(none, 1) == [None]
    assert elf.adjusted_base(old, none, ctrl) == old


def test_plain_bsdiff_kept_when_re_aiming_does_not_help(libs: tuple[bytes, bytes]) -> None:
    """Nothing moved (one string byte changed): the ELF part would only add its pairing."""
    old, _ = libs
    at = old.index(b"hello %s")
    new = old[:at] + b"H" + old[at + 1 :]
    method, pairing, ctrl, diff, extra, adjusted = methods.unit_streams(old, new)
    assert method == METHOD_BSDIFF and pairing == b"" and adjusted == b""
    assert bsdiff4.core.patch(old, len(new), ctrl, diff, extra) == new


def test_unit_stuffed_with_elf_magic_is_cheap() -> None:
    """Magic numbers that do not parse cost a bounded look each, nothing is copied."""
    import time

    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    header[18:20] = struct.pack("<H", 62)  # x86-64, then nonsense header sizes
    stuffed = bytes(header) * 40_000  # 2.5 MB of would-be images
    t = time.perf_counter()
    assert elf.find_images(stuffed) == []
    assert elf.diff(stuffed, stuffed[:-64]) is None
    assert time.perf_counter() - t < 5


def test_mutated_elf_parts_are_refused_cleanly(libs: tuple[bytes, bytes], tmp_path: Path) -> None:
    """Control streams of an ELF part edited (pairing and triples), body checksum fixed:
    applying refuses with a PatchError or yields the target, nothing else escapes."""
    import dataclasses
    import hashlib

    from patches.errors import PatchError
    from patches.format import compress

    old, new = libs
    a, b, p = tmp_path / "a.so", tmp_path / "b.so", tmp_path / "p.wsp"
    a.write_bytes(old)
    b.write_bytes(new)
    assert METHOD_ELF in _create_and_apply(a, b, p, tmp_path / "o.so")
    data = p.read_bytes()
    h = Header.decode(data)
    pos = HEADER.size + h.recipe_len
    ctrl = decompress(data[pos : pos + h.ctrl_len[1]], h.ctrl_len[0], "ctrl")
    rest = data[pos + h.ctrl_len[1] :]
    rnd = random.Random(11)
    for i in range(60):
        edited = bytearray(ctrl)
        for _ in range(1 + i % 4):
            at = rnd.randrange(len(edited)) if i % 2 else rnd.randrange(min(len(edited), 240))
            edited[at] = rnd.randrange(256)
        section = compress(bytes(edited))
        body = data[HEADER.size : pos] + section + rest
        header = dataclasses.replace(
            h,
            ctrl_len=(len(edited), len(section)),
            body_sha256=hashlib.sha256(body).digest(),
        )
        bad = tmp_path / f"bad{i}.wsp"
        bad.write_bytes(header.encode() + body)
        out = tmp_path / f"out{i}"
        try:
            apply_patch(a, bad, out)
        except PatchError:
            assert not out.exists()
        else:
            assert out.read_bytes() == new


def test_out_of_range_fields_are_zeroed(libs: tuple[bytes, bytes]) -> None:
    """A re-aimed value that does not fit its field clears it (as struct.pack_into left it
    when this code let it fail: patches made then depend on it); an undefined one stays."""
    old, new = libs
    _, ctrl, _, _ = _roundtrip(old, new)
    # New loads placed so that every new virtual address is negative.
    pairing = elf.encode_pairing([(0, len(old), [(1 << 40, 0, 1 << 41)])])
    adjusted = elf.adjusted_base(old, pairing, ctrl)
    image = elf.parse(old)
    assert image is not None
    text = next(i for i, s in enumerate(image.sections) if s.name == b".text")
    sh_addr = image.shoff + 64 * text + 16  # an ABS64 field
    assert struct.unpack_from("<Q", old, sh_addr)[0] != 0
    assert struct.unpack_from("<Q", adjusted, sh_addr)[0] == 0
    # Before any match the alignment is undefined: the section table's offset stays.
    none = elf.encode_pairing([(0, len(old), image.loads)])
    assert elf.adjusted_base(old, none, b"")[32:48] == old[32:48]


def test_re_aimed_base_is_what_the_applier_computes(libs: tuple[bytes, bytes]) -> None:
    """The creator's re-aimed base (kept for its self-check) is adjusted_base's output for
    the very pairing and control bytes it wrote, and a wrong kept base is caught."""
    old, new = libs
    method, pairing, ctrl, diff, extra, adjusted = methods.unit_streams(old, new)
    assert method == METHOD_ELF and adjusted
    assert adjusted == elf.adjusted_base(old, pairing, ctrl)
    key = elf.aimed_key(old, pairing, ctrl)
    assert key != elf.aimed_key(old + b"\0", pairing, ctrl)
    n = len(ctrl) // methods.CTRL_SIZE
    part = Part(METHOD_ELF, 0, len(old), len(new), n, len(pairing) // methods.CTRL_SIZE)
    kept = methods.PartApplier(pairing + ctrl, diff, extra, len(old), {key: adjusted})
    assert kept.apply(part, old, b"") == new
    forged = methods.PartApplier(pairing + ctrl, diff, extra, len(old), {key: bytes(len(old))})
    assert forged.apply(part, old, b"") != new  # then the target digest check fails


def test_creation_check_reuses_the_re_aimed_bases(
    libs: tuple[bytes, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a new patch does not re-aim the images again; a client does."""

    def wheel(lib: bytes, text: bytes, path: Path) -> Path:
        # Compressed text that changes a little: a raw diff of the zip is far bigger.
        path.write_bytes(make_zip({"pkg/_native.so": lib, "pkg/mod.py": text}))
        return path

    text = text_blob(3, 200_000)
    old = wheel(libs[0], text, tmp_path / "a.whl")
    new = wheel(libs[1], mutate(text, 4, 3), tmp_path / "b.whl")
    calls = []
    real = elf.adjusted_base

    def counting(base: bytes, pairing_raw: bytes, ctrl: bytes) -> bytes:
        calls.append(len(base))
        return real(base, pairing_raw, ctrl)

    monkeypatch.setattr(elf, "adjusted_base", counting)
    info = create_patch(old, new, tmp_path / "p.wsp")
    assert info.transform == "archive" and calls == []
    header = read_header(tmp_path / "p.wsp")
    assert header.transform == TRANSFORM_ARCHIVE
    apply_patch(old, tmp_path / "p.wsp", tmp_path / "out.whl")
    assert len(calls) == 1 and (tmp_path / "out.whl").read_bytes() == new.read_bytes()
