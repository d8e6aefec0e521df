"""Expanding archives into a diffable stream, and recompressing them byte for byte.

An archive is cut into *ops*: ``RAW`` ranges (headers, directories, stored data,
anything we cannot reproduce) are copied as they are, and compressed ranges are
replaced by their uncompressed content plus the compressor settings that
reproduce the exact compressed bytes (found by trying them at creation time).

Supported: zip/wheel members (deflate via zlib), gzip members (.tar.gz),
xz blocks with one LZMA2 filter (.tar.xz, dpkg's multi-threaded xz included:
we rebuild the raw LZMA2 data and copy the container bytes), single zstd frames,
and ar archives (.deb) whose members are any of these.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import shutil
import struct
import subprocess
import tarfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import zstandard

try:  # miniz_oxide's deflate (Rust): what maturin-built wheels are compressed with
    from cramjam import deflate as miniz_deflate
except ImportError:  # pragma: no cover - cramjam is in the patches extra
    miniz_deflate = None  # type: ignore[assignment]

from patches.errors import ArchiveError, PatchFormatError

RAW, DEFLATE, LZMA2, ZSTD, GZIP_CLI, BASE, MD5SUMS, MINIZ = 0, 1, 2, 3, 4, 5, 6, 7
KINDS = (RAW, DEFLATE, LZMA2, ZSTD, GZIP_CLI, BASE, MD5SUMS, MINIZ)
# kind, p1, p2, p3, p4, descendants, expanded length, output length
OP = struct.Struct(">BBBbIIQQ")
HEADER_SUFFIX = "\0header"  # unit name of a zip member's local header
MAX_DEPTH = 2  # archive inside a compressed range inside an archive: .deb > data.tar.xz > x.gz
_GZIP_TIMEOUT = 120
MAX_EXPANDED = 512 << 20  # above this an archive is diffed raw, bounding memory
MAX_RATIO = 200  # expanded/compressed; beyond it we call it a bomb and diff raw
_PROBE_STEP = 1 << 18  # compressors are fed this much at a time, when probing and rebuilding

# Compressions run and compared byte for byte while probing: (kind, p1, p2, p3, p4,
# sha256 of the input) -> the output. Rebuilding feeds compressors exactly as probing
# does (see :func:`_feed`), so the creator's check of its own patch reuses these
# instead of compressing everything a second time.
Proven = dict[tuple[int, int, int, int, int, bytes], bytes]


@dataclass(frozen=True)
class Op:
    """One range of the archive: how ``exp_len`` stream bytes become ``out_len`` file bytes."""

    kind: int
    exp_len: int
    out_len: int
    p1: int = 0
    p2: int = 0
    p3: int = 0
    p4: int = 0
    # Ops that follow in the recipe and make up this op's plain input (a tar inside an
    # xz block); then ``exp_len`` is their total stream length. Preorder, all descendants.
    descendants: int = 0
    name: str = ""  # creation only: the member the range belongs to

    def encode(self) -> bytes:
        """The op's recipe entry."""
        return OP.pack(
            self.kind,
            self.p1,
            self.p2,
            self.p3,
            self.p4,
            self.descendants,
            self.exp_len,
            self.out_len,
        )


@dataclass
class Expansion:
    """An expanded archive: the stream and the ops that rebuild the archive from it."""

    stream: bytes
    ops: list[Op]
    proven: Proven = field(default_factory=dict)


def _proof_key(op: Op, plain: bytes | memoryview) -> tuple[int, int, int, int, int, bytes]:
    return (op.kind, op.p1, op.p2, op.p3, op.p4, hashlib.sha256(plain).digest())


class _Expander:
    def __init__(
        self,
        data: bytes,
        probe: bool,
        limit: int | None = None,
        depth: int = 0,
        unchanged: dict[bytes, int] | None = None,
        proven: Proven | None = None,
    ) -> None:
        self.data = data
        self.probe = probe
        self.proven: Proven = {} if proven is None else proven
        self.unchanged = unchanged or {}
        self.chunks: list[bytes] = []
        self.ops: list[Op] = []
        self.total = 0
        self.limit = (
            min(MAX_EXPANDED, max(1 << 20, MAX_RATIO * len(data))) if limit is None else limit
        )
        self.depth = depth
        self.last_deflate: tuple[int, int, int] | None = None
        # A control tar's md5sums member: (op index, chunk index) of its own RAW op.
        self.md5sums: tuple[int, int] | None = None
        # ar level: (container op index, plain tar) of the last tar expanded in a member.
        self.last_tar: tuple[int, bytes] | None = None

    def emit_compressed(self, op: Op, plain: bytes, comp: bytes) -> None:
        """Emit a compressed range; a tar inside it is expanded further (its members too).

        ``comp`` is what compressing ``plain`` as ``op`` says gives: when probing it was
        just checked, so it is kept in :attr:`proven`.
        """
        if self.probe:
            self.proven[_proof_key(op, plain)] = comp
        if self.depth < MAX_DEPTH and _is_tar(plain):
            sub = _Expander(plain, self.probe, self.budget(), self.depth + 1, proven=self.proven)
            try:
                sub.tar(op.name)
            except ArchiveError:
                sub = None  # type: ignore[assignment]
            # A data tar after a control tar with md5sums is kept as a container (even
            # with RAW children only): MD5SUMS names it, see ``ar``.
            wanted = sub is not None and (
                any(o.kind != RAW for o in sub.ops)
                or sub.md5sums is not None
                or (self.md5sums is not None and op.name.startswith("data.tar"))
            )
            if sub is not None and wanted:
                if sub.md5sums is not None:
                    self.md5sums = (
                        len(self.ops) + 1 + sub.md5sums[0],
                        len(self.chunks) + sub.md5sums[1],
                    )
                self.last_tar = (len(self.ops), plain)
                self.total += sub.total
                self.ops.append(
                    Op(
                        op.kind,
                        sub.total,
                        op.out_len,
                        op.p1,
                        op.p2,
                        op.p3,
                        op.p4,
                        descendants=len(sub.ops),
                        name=op.name,
                    )
                )
                self.ops.extend(sub.ops)
                self.chunks.extend(sub.chunks)
                return
        self.emit(op, plain)

    def tar(self, name: str) -> None:
        """Members of a tar: headers RAW, gzip members expanded (their ops keep ``name``)."""
        try:
            with tarfile.open(fileobj=io.BytesIO(self.data), mode="r:") as tf:
                members = tf.getmembers()
        except (tarfile.TarError, ValueError, EOFError) as exc:
            raise ArchiveError(f"{name}: bad tar ({exc})") from exc
        pos = 0
        for m in members:
            start, stop = m.offset_data, m.offset_data + m.size
            if not m.isfile() or start < pos or stop > len(self.data):
                continue
            if m.name in ("./md5sums", "md5sums") and self.depth == 1 and self.md5sums is None:
                # Its own op: it may turn out derivable from the data tar (see ``ar``).
                self.raw(pos, start, name)
                self.md5sums = (len(self.ops), len(self.chunks)) if stop > start else None
                self.raw(start, stop, name)
                pos = stop
            elif self.data[start : start + 3] == b"\x1f\x8b\x08" and m.size < self.budget():
                self.raw(pos, start, name)
                self.gzip_member(start, stop, name)
                pos = stop
        self.raw(pos, len(self.data), name)

    def gzip_member(self, start: int, stop: int, name: str) -> None:
        """A whole .gz file: by zlib if it reproduces it, else by the ``gzip`` program."""
        comp = self.data[start:stop]
        try:
            plain = _gunzip(comp, self.budget())
        except ArchiveError:
            self.raw(start, stop, name)
            return
        if self.probe:
            sub = _Expander(comp, True, self.budget(), self.depth + 1, proven=self.proven)
            try:
                sub.gzip(0, len(comp), name)
            except ArchiveError:
                sub = None  # type: ignore[assignment]
            if sub is not None and any(o.kind == DEFLATE for o in sub.ops):
                self.total += sub.total
                self.ops.extend(sub.ops)
                self.chunks.extend(sub.chunks)
                return
            level = _find_gzip_cli(plain, comp)
            if level is None:
                self.raw(start, stop, name)
                return
            op = Op(GZIP_CLI, len(plain), len(comp), level, name=name)
            self.proven[_proof_key(op, plain)] = comp
            self.emit(op, plain)
        else:
            self.emit(Op(GZIP_CLI, len(plain), len(comp), 9, name=name), plain)

    def emit(self, op: Op, stream: bytes) -> None:
        self.total += len(stream)
        if self.total > self.limit:
            raise ArchiveError("archive expands beyond the limit (bomb?)")
        self.chunks.append(stream)
        self.ops.append(op)

    def raw(self, start: int, end: int, name: str) -> None:
        if end > start:
            self.emit(Op(RAW, end - start, end - start, name=name), self.data[start:end])

    def budget(self) -> int:
        return self.limit - self.total

    # -- deflate (zip members, gzip) ------------------------------------------------
    def deflate(self, start: int, end: int, name: str, expected: int | None = None) -> int:
        """Expand the raw deflate stream at ``start``; returns where it ended."""
        d = zlib.decompressobj(-15)
        try:
            plain = d.decompress(self.data[start:end], self.budget() + 1)
        except zlib.error as exc:
            raise ArchiveError(f"{name}: bad deflate data ({exc})") from exc
        if d.unconsumed_tail or len(plain) > self.budget():
            raise ArchiveError("archive expands beyond the limit (bomb?)")
        if not d.eof or (expected is not None and len(plain) != expected):
            raise ArchiveError(f"{name}: truncated deflate data")
        stop = end - len(d.unused_data)
        comp = self.data[start:stop]
        params = self._find_deflate(plain, comp) if self.probe else (DEFLATE, 6, 8)
        if params is None:
            self.emit(Op(RAW, len(comp), len(comp), name=name), comp)
        else:
            kind, level, mem = params
            self.emit_compressed(
                Op(kind, len(plain), len(comp), level, mem, -15, name=name), plain, comp
            )
        return stop

    def _find_deflate(self, plain: bytes, comp: bytes) -> tuple[int, int, int] | None:
        """(kind, level, memLevel) that reproduce ``comp``: zlib, else miniz_oxide."""
        tries = [
            (DEFLATE, 6, 8),
            (DEFLATE, 9, 8),
            *((DEFLATE, lv, 8) for lv in range(10)),
            *((DEFLATE, lv, 9) for lv in range(10)),
            *((MINIZ, lv, 0) for lv in (6, 9, *range(10))),
        ]
        if self.last_deflate:
            tries.insert(0, self.last_deflate)
        for kind, level, mem in dict.fromkeys(tries):
            if kind == MINIZ:
                found = miniz_deflate is not None and _miniz(plain, level) == comp
            else:
                found = _reproduces(zlib.compressobj(level, zlib.DEFLATED, -15, mem), plain, comp)
            if found:
                self.last_deflate = (kind, level, mem)
                return kind, level, mem
        return None

    # -- formats ------------------------------------------------------------------------
    def any(self, start: int, end: int, name: str) -> None:
        head = self.data[start : start + 8]
        if head.startswith(b"\x1f\x8b\x08"):
            self.gzip(start, end, name)
        elif head.startswith(b"\xfd7zXZ\x00"):
            self.xz(start, end, name)
        elif head.startswith(b"\x28\xb5\x2f\xfd"):
            self.zstd(start, end, name)
        else:
            self.raw(start, end, name)

    def gzip(self, start: int, end: int, name: str) -> None:
        pos = start
        while pos < end:
            if self.data[pos : pos + 3] != b"\x1f\x8b\x08":
                self.raw(pos, end, name)  # trailing garbage or padding: keep as is
                return
            hdr = _gzip_header_end(self.data, pos, end)
            self.raw(pos, hdr, name)
            stop = self.deflate(hdr, end, name)
            if stop + 8 > end:
                raise ArchiveError(f"{name}: truncated gzip trailer")
            self.raw(stop, stop + 8, name)
            pos = stop + 8

    def xz(self, start: int, end: int, name: str) -> None:
        data = self.data
        if end - start < 24:
            raise ArchiveError(f"{name}: truncated xz stream")
        check_size = _XZ_CHECK_SIZES.get(data[start + 7] & 0x0F)
        if check_size is None:
            raise ArchiveError(f"{name}: unknown xz check")
        pos = start + 12
        self.raw(start, pos, name)
        while pos < end and data[pos] != 0:  # 0 starts the index
            hsize = (data[pos] + 1) * 4
            dict_size = _xz_lzma2_dict(data[pos : pos + hsize])
            if dict_size is None:  # other filters: keep the rest as is
                break
            self.raw(pos, pos + hsize, name)
            pos += hsize
            dec = lzma.LZMADecompressor(
                lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": dict_size}]
            )
            try:
                plain = dec.decompress(data[pos:end], self.budget() + 1)
            except lzma.LZMAError as exc:
                raise ArchiveError(f"{name}: bad xz block ({exc})") from exc
            if len(plain) > self.budget():
                raise ArchiveError("archive expands beyond the limit (bomb?)")
            if not dec.eof:
                raise ArchiveError(f"{name}: truncated xz block")
            stop = end - len(dec.unused_data)
            comp = data[pos:stop]
            preset = self._find_lzma2(plain, comp, dict_size) if self.probe else 6
            if preset is None:
                self.emit(Op(RAW, len(comp), len(comp), name=name), comp)
            else:
                self.emit_compressed(
                    Op(LZMA2, len(plain), len(comp), preset, p4=dict_size, name=name), plain, comp
                )
            pad = (-(stop - pos)) % 4
            self.raw(stop, stop + pad + check_size, name)
            pos = stop + pad + check_size
        self.raw(pos, end, name)  # index, footer (and any blocks we do not handle)

    def _find_lzma2(self, plain: bytes, comp: bytes, dict_size: int) -> int | None:
        # dpkg-deb and xz default to preset 6; try it first, then the rest.
        for preset in (6, 9, 0, 1, 2, 3, 4, 5, 7, 8):
            for extreme in (0, lzma.PRESET_EXTREME):
                p = preset | extreme
                if _reproduces(_lzma2_compressor(p, dict_size), plain, comp):
                    return p & 0x7F | (0x80 if extreme else 0)
        return None

    def zstd(self, start: int, end: int, name: str) -> None:
        comp = self.data[start:end]
        try:
            params = zstandard.get_frame_parameters(comp)
            if params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
                self.raw(start, end, name)  # no declared size: not expanded (bounded memory)
                return
            if params.content_size > self.budget():
                raise ArchiveError("archive expands beyond the limit (bomb?)")
            # The decoder refuses output beyond the declared size, so memory stays bounded.
            dobj = zstandard.ZstdDecompressor().decompressobj()
            plain = dobj.decompress(comp)
        except zstandard.ZstdError as exc:
            raise ArchiveError(f"{name}: bad zstd frame ({exc})") from exc
        if len(plain) > self.budget():
            raise ArchiveError("archive expands beyond the limit (bomb?)")
        if dobj.unused_data or not dobj.eof:
            self.raw(start, end, name)  # several frames or trailing data: keep as is
            return
        flags = (1 if params.has_checksum else 0) | (2 if params.content_size >= 0 else 0)
        found = None
        if self.probe:
            for level in (19, 3, *range(1, 23)):
                if _zstd_compress(plain, level, flags) == comp:
                    found = level
                    break
        else:
            found = 3
        if found is None:
            self.emit(Op(RAW, len(comp), len(comp), name=name), comp)
        else:
            self.emit_compressed(
                Op(ZSTD, len(plain), len(comp), found, flags, name=name), plain, comp
            )

    def zip(self) -> None:
        data = self.data
        try:
            infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
        except (zipfile.BadZipFile, ValueError, OSError) as exc:
            raise ArchiveError(f"bad zip ({exc})") from exc
        pos = 0
        for info in sorted(infos, key=lambda i: i.header_offset):
            _check_member_name(info.filename)
            off = info.header_offset
            if off < pos or data[off : off + 4] != b"PK\x03\x04":
                raise ArchiveError("zip members overlap or local header missing")
            nlen, xlen = struct.unpack_from("<HH", data, off + 26)
            start = off + 30 + nlen + xlen
            stop = start + info.compress_size
            if stop > len(data):
                raise ArchiveError("zip member runs past the end")
            # Own unit: headers change with every build (dates, CRCs) even when the
            # content does not, and identical content then becomes a cheap copy part.
            self.raw(pos, start, info.filename + HEADER_SUFFIX)
            at = self.unchanged.get(data[start:stop]) if stop - start >= _BASE_MIN else None
            if at is not None:
                # The same compressed bytes are in the old archive: copied from there, so
                # neither expanded, probed, diffed nor recompressed (numpy: 980 of 1000).
                self.ops.append(Op(BASE, 0, stop - start, p4=at, name=info.filename))
            elif info.compress_type == zipfile.ZIP_DEFLATED and not info.flag_bits & 1:
                end = self.deflate(start, stop, info.filename, expected=info.file_size)
                if end != stop:
                    raise ArchiveError(f"{info.filename}: deflate size differs from directory")
            else:
                self.raw(start, stop, info.filename)
            pos = stop
        self.raw(pos, len(data), "<central directory>")

    def ar(self) -> None:
        data = self.data
        self.raw(0, 8, "<ar>")
        pos = 8
        data_tar: tuple[int, bytes] | None = None
        while pos + 60 <= len(data):
            name = data[pos : pos + 16].decode("ascii", "replace").strip().rstrip("/")
            _check_member_name(name)
            try:
                size = int(data[pos + 48 : pos + 58].decode("ascii").strip())
            except ValueError as exc:
                raise ArchiveError("bad ar member size") from exc
            start = pos + 60
            if size < 0 or start + size > len(data):
                raise ArchiveError("ar member runs past the end")
            self.raw(pos, start, name)
            self.last_tar = None
            self.any(start, start + size, name)
            if name.startswith("data.tar") and self.last_tar is not None:
                data_tar = self.last_tar
            pos = start + size + (size & 1)
            self.raw(start + size, min(pos, len(data)), name)
        self.raw(pos, len(data), "<ar>")
        if self.md5sums is not None and data_tar is not None:
            self._derive_md5sums(*self.md5sums, *data_tar)

    def _derive_md5sums(self, at: int, chunk: int, ref: int, plain_tar: bytes) -> None:
        """Replace the control tar's md5sums by an ``MD5SUMS`` op if recomputing it from
        the data tar gives exactly the same bytes (else it stays ``RAW``, diffed as is)."""
        real = self.chunks[chunk]
        try:
            lines = _md5sum_lines(plain_tar)  # hashed once, then tried in each order
        except PatchFormatError:
            return
        mode = next((m for m in MD5SUMS_MODES if _md5sums_in(lines, m) == real), None)
        if mode is None:
            return
        old = self.ops[at]
        self.ops[at] = Op(MD5SUMS, 0, len(real), mode, p4=ref, name=old.name)
        self.chunks[chunk] = b""
        self.total -= len(real)
        # The control tar's container op spans its children's stream bytes: shrink it.
        parent = max(i for i in range(at) if i + self.ops[i].descendants >= at)
        p = self.ops[parent]
        self.ops[parent] = Op(
            p.kind, p.exp_len - len(real), p.out_len, p.p1, p.p2, p.p3, p.p4, p.descendants, p.name
        )


_XZ_CHECK_SIZES = {0: 0, 1: 4, 4: 8, 10: 32}
MD5SUMS_SORTED, MD5SUMS_TAR_ORDER = 0, 1
MD5SUMS_MODES = (MD5SUMS_SORTED, MD5SUMS_TAR_ORDER)


def md5sums_of(plain_tar: bytes, mode: int) -> bytes:
    """A Debian ``md5sums`` file for the regular files of a data tar.

    ``md5sum``'s format (``<hex>  <path>``, path without ``./``), lines sorted by path
    bytes (dh_md5sums: ``find | LC_ALL=C sort``) or in tar order. MD5 here is the file
    format's field, not a security check: the rebuilt file is verified by its digests.
    """
    if mode not in MD5SUMS_MODES:
        raise PatchFormatError("bad md5sums mode")
    return _md5sums_in(_md5sum_lines(plain_tar), mode)


def _md5sum_lines(plain_tar: bytes) -> list[tuple[bytes, bytes]]:
    """(path, ``md5sums`` line) of each regular file of a data tar, in tar order."""
    try:
        with tarfile.open(fileobj=io.BytesIO(plain_tar), mode="r:") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, ValueError, EOFError) as exc:
        raise PatchFormatError(f"md5sums: the data tar does not parse ({exc})") from exc
    lines: list[tuple[bytes, bytes]] = []
    for m in members:
        if not m.isreg():
            continue
        if m.offset_data + m.size > len(plain_tar):
            raise PatchFormatError("md5sums: data tar member runs past the end")
        path = (m.name[2:] if m.name.startswith("./") else m.name).encode(
            "utf-8", "surrogateescape"
        )
        digest = hashlib.md5(
            plain_tar[m.offset_data : m.offset_data + m.size], usedforsecurity=False
        )
        lines.append((path, digest.hexdigest().encode() + b"  " + path + b"\n"))
    return lines


def _md5sums_in(lines: list[tuple[bytes, bytes]], mode: int) -> bytes:
    if mode == MD5SUMS_SORTED:
        lines = sorted(lines, key=lambda x: x[0])
    return b"".join(line for _, line in lines)


def _xz_lzma2_dict(header: bytes) -> int | None:
    """Dictionary size of a block header with a single LZMA2 filter, else None."""
    if len(header) < 8 or header[1] & 0x3C or header[1] & 0x03:
        return None  # reserved bits, or more than one filter
    pos = 2
    for flag in (0x40, 0x80):
        if header[1] & flag:
            while pos < len(header) and header[pos] & 0x80:
                pos += 1
            pos += 1
    if header[pos : pos + 2] != b"\x21\x01" or pos + 2 >= len(header):
        return None
    prop = header[pos + 2]
    if prop > 40:
        return None
    return 0xFFFFFFFF if prop == 40 else (2 | (prop & 1)) << (prop // 2 + 11)


def _is_tar(plain: bytes) -> bool:
    return len(plain) >= 512 and plain[257:262] == b"ustar"


def _gunzip(comp: bytes, limit: int) -> bytes:
    """Decompress one whole gzip file, refusing more than ``limit`` bytes."""
    d = zlib.decompressobj(31)
    try:
        plain = d.decompress(comp, limit + 1)
    except zlib.error as exc:
        raise ArchiveError(f"bad gzip data ({exc})") from exc
    if len(plain) > limit or d.unconsumed_tail:
        raise ArchiveError("archive expands beyond the limit (bomb?)")
    if not d.eof or d.unused_data:
        raise ArchiveError("gzip data truncated or followed by more")
    return plain


def gzip_cli(plain: bytes, level: int) -> bytes:
    """``gzip -n -LEVEL`` of ``plain`` (GNU gzip's deflate, which zlib does not reproduce).

    Debian compresses changelogs with ``gzip -9n``; its output has been stable for
    decades and every patch using it was verified when created.
    """
    exe = shutil.which("gzip")
    if exe is None:
        raise PatchFormatError("this patch needs the gzip program, which is not installed")
    if not 1 <= level <= 9:
        raise PatchFormatError("bad gzip level")
    try:
        done = subprocess.run(
            [exe, "-n", f"-{level}", "-c"],
            input=plain,
            capture_output=True,
            timeout=_GZIP_TIMEOUT,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise PatchFormatError(f"gzip failed ({exc})") from exc
    return done.stdout


def _find_gzip_cli(plain: bytes, comp: bytes) -> int | None:
    if shutil.which("gzip") is None:  # pragma: no cover - gzip is on every Debian system
        return None
    for level in (9, 6):
        try:
            if gzip_cli(plain, level) == comp:
                return level
        except PatchFormatError:  # pragma: no cover - gzip crashed
            return None
    return None


def _gzip_header_end(data: bytes, pos: int, end: int) -> int:
    if pos + 10 > end:
        raise ArchiveError("truncated gzip header")
    flags = data[pos + 3]
    p = pos + 10
    if flags & 4:
        if p + 2 > end:
            raise ArchiveError("truncated gzip header")
        p += 2 + int.from_bytes(data[p : p + 2], "little")
    for bit in (8, 16):
        if flags & bit:
            z = data.find(b"\0", p, end)
            if z < 0:
                raise ArchiveError("truncated gzip header")
            p = z + 1
    if flags & 2:
        p += 2
    if p > end:
        raise ArchiveError("truncated gzip header")
    return p


def _check_member_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"unsafe member path {name!r}")


def _miniz(plain: bytes | memoryview, level: int) -> bytes:
    """Raw deflate by miniz_oxide (cramjam), as the Rust ``zip`` crate writes it."""
    if miniz_deflate is None:
        raise PatchFormatError("this patch needs the cramjam package (miniz_oxide deflate)")
    if not 0 <= level <= 9:
        raise PatchFormatError("bad miniz level")
    return bytes(miniz_deflate.compress(bytes(plain), level=level))


class _Compressor(Protocol):
    def compress(self, data: bytes | memoryview, /) -> bytes: ...
    def flush(self) -> bytes: ...


def _lzma2_compressor(preset: int, dict_size: int) -> lzma.LZMACompressor:
    return lzma.LZMACompressor(
        lzma.FORMAT_RAW,
        filters=[{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size}],
    )


def _zstd_compress(plain: bytes, level: int, flags: int) -> bytes:
    c = zstandard.ZstdCompressor(
        level=level, write_checksum=bool(flags & 1), write_content_size=bool(flags & 2)
    )
    return c.compress(plain)


def _feed(c: _Compressor, plain: bytes | memoryview) -> Iterator[bytes]:
    """What ``c`` outputs for ``plain``, fed in :data:`_PROBE_STEP` pieces, then flushed."""
    for i in range(0, len(plain), _PROBE_STEP):
        yield c.compress(plain[i : i + _PROBE_STEP])
    yield c.flush()


def _reproduces(c: _Compressor, plain: bytes, comp: bytes) -> bool:
    """Compress ``plain`` incrementally with ``c``, giving up at the first differing byte."""
    got = 0
    for out in _feed(c, plain):
        if out != comp[got : got + len(out)]:
            return False
        got += len(out)
    return got == len(comp)


def expand(data: bytes, probe: bool, base: bytes | None = None) -> Expansion:
    """Expand an archive; with ``probe`` find settings that reproduce each compressed range.

    Without ``probe`` (the base side) every compressed range is expanded: only the
    stream matters there. With ``base`` (the old version, a zip), members whose
    compressed bytes are found unchanged in it become ``BASE`` ops (copied from the old
    file). Raises :class:`ArchiveError` for anything unsafe or malformed.
    """
    ex = _Expander(data, probe, unchanged=_zip_members(base) if base else None)
    if data.startswith(b"PK\x03\x04"):
        ex.zip()
    elif data.startswith(b"!<arch>\n"):
        ex.ar()
    else:
        ex.any(0, len(data), "<file>")
    return Expansion(b"".join(ex.chunks), ex.ops, ex.proven)


_BASE_MIN = 64  # smaller members are cheaper as they are


def _zip_members(data: bytes) -> dict[bytes, int]:
    """Compressed bytes of each member of a zip (at least _BASE_MIN) -> offset in ``data``.

    Anything unreadable gives no entries: the base is only a source of copies.
    """
    if not data.startswith(b"PK\x03\x04") or len(data) >= 1 << 32:
        return {}
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return {}
    found: dict[bytes, int] = {}
    for info in infos:
        off = info.header_offset
        if data[off : off + 4] != b"PK\x03\x04" or off + 30 > len(data):
            continue
        nlen, xlen = struct.unpack_from("<HH", data, off + 26)
        start = off + 30 + nlen + xlen
        stop = start + info.compress_size
        if stop - start >= _BASE_MIN and stop <= len(data):
            found.setdefault(data[start:stop], start)
    return found


def is_archive(data: bytes) -> bool:
    """Whether :func:`expand` knows the format (by magic bytes)."""
    return data.startswith(
        (b"PK\x03\x04", b"!<arch>\n", b"\x1f\x8b\x08", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
    )


def expand_base(data: bytes) -> bytes:
    """The base stream of a file: its expansion, or the file itself if not expandable."""
    return base_expansion(data).stream


def base_expansion(data: bytes) -> Expansion:
    """The old file's expansion (for its stream and members), or the file itself with no
    ops if it is not an expandable archive."""
    if not is_archive(data):
        return Expansion(data, [])
    try:
        return expand(data, probe=False)
    except ArchiveError:
        return Expansion(data, [])


def encode_recipe(ops: list[Op]) -> bytes:
    """The recipe's bytes (uncompressed)."""
    return b"".join(op.encode() for op in ops)


def decode_recipe(raw: bytes, stream_len: int, target_size: int, base_size: int = 0) -> list[Op]:
    """Parse a recipe and check it covers exactly the stream and the target.

    ``BASE`` entries (top level only) must lie inside the old file of ``base_size`` bytes.
    """
    if len(raw) % OP.size:
        raise PatchFormatError("recipe has a partial entry")
    ops = []
    for o in range(0, len(raw), OP.size):
        kind, p1, p2, p3, p4, desc, exp_len, out_len = OP.unpack_from(raw, o)
        ops.append(Op(kind, exp_len, out_len, p1, p2, p3, p4, desc))
    for op in ops:
        if op.kind not in KINDS or (op.kind in (RAW, GZIP_CLI, BASE, MD5SUMS) and op.descendants):
            raise PatchFormatError("bad recipe entry")
        if op.kind == MD5SUMS and (op.exp_len or op.p1 not in MD5SUMS_MODES):
            raise PatchFormatError("bad recipe entry (md5sums)")
        if op.kind == BASE and (op.exp_len or op.p4 + op.out_len > base_size):
            raise PatchFormatError("bad recipe entry (outside the old file)")
        if op.kind == RAW and op.exp_len != op.out_len:
            raise PatchFormatError("bad recipe entry")
    exp, out, end = _check_tree(ops, 0, len(ops), 0)
    if end != len(ops) or exp != stream_len or out != target_size:
        raise PatchFormatError("recipe does not cover the target")
    tops = _top_indices(ops)
    for i, op in enumerate(ops):
        # md5sums are derived from another top-level member's tar, never from its own
        # container: that one is rebuilt first, so no cycle and no forward reference.
        if op.kind == MD5SUMS:
            ref = op.p4
            if (
                ref not in tops
                or not ops[ref].descendants
                or ref <= i <= ref + ops[ref].descendants
            ):
                raise PatchFormatError("md5sums entry refers to no other archive member")
    return ops


def _top_indices(ops: list[Op]) -> set[int]:
    found, i = set(), 0
    while i < len(ops):
        found.add(i)
        i += 1 + ops[i].descendants
    return found


def _check_tree(ops: list[Op], i: int, end: int, depth: int) -> tuple[int, int, int]:
    """Sum (stream bytes, output bytes) of the ops in ``[i, end)``; checks nesting."""
    exp = out = 0
    while i < end:
        op = ops[i]
        stop = i + 1 + op.descendants
        if stop > end:
            raise PatchFormatError("recipe nesting out of range")
        if op.kind == BASE and depth:
            raise PatchFormatError("recipe copies from the old file inside a container")
        if op.descendants:
            if depth >= MAX_DEPTH:
                raise PatchFormatError("recipe nested too deeply")
            child_exp, _, _ = _check_tree(ops, i + 1, stop, depth + 1)
            if child_exp != op.exp_len:
                raise PatchFormatError("nested recipe does not cover its range")
        exp += op.exp_len
        out += op.out_len
        i = stop
    return exp, out, end


def rebuild(
    ops: list[Op],
    stream: bytes,
    threads: int = 2,
    base: bytes = b"",
    derived: dict[int, bytes] | None = None,
    proven: Proven | None = None,
) -> Iterator[bytes]:
    """Yield the archive's bytes, op by op (each checked against its declared size).

    ``base`` is the old file, which ``BASE`` ops copy from. ``MD5SUMS`` ops are computed
    first, from the rebuilt plain tar of the member they name (kept to rebuild that
    member too); nested calls get them in ``derived`` (index in ``ops`` -> bytes).

    zlib, lzma and zstd release the GIL while compressing, so top-level ops are
    recompressed on ``threads`` threads, a few ops ahead of what has been yielded
    (memory stays a few pieces; numpy's 1000 deflated members: ~1.3 s -> ~0.7 s).
    ``proven`` (from :func:`expand` with ``probe``) supplies compressions already run.
    """
    view = memoryview(stream)
    starts: list[tuple[int, int]] = []  # (op index, stream position) of each top-level op
    pos = i = 0
    while i < len(ops):
        starts.append((i, pos))
        pos += ops[i].exp_len
        i += 1 + ops[i].descendants

    plains: dict[int, bytes] = {}

    def plain_of(i: int, pos: int) -> bytes:
        op = ops[i]
        children = ops[i + 1 : i + 1 + op.descendants]
        inner = {k - i - 1: v for k, v in (derived or {}).items() if i < k <= i + op.descendants}
        return b"".join(
            rebuild(
                children,
                bytes(view[pos : pos + op.exp_len]),
                threads=1,
                derived=inner,
                proven=proven,
            )
        )

    if derived is None:
        derived = {}
        where = dict(starts)
        for j, op in enumerate(ops):
            if op.kind == MD5SUMS:
                ref = op.p4
                if ref not in where or not ops[ref].descendants:
                    raise PatchFormatError("md5sums entry refers to no other archive member")
                if ref not in plains:
                    plains[ref] = plain_of(ref, where[ref])
                derived[j] = md5sums_of(plains[ref], op.p1)

    def piece(at: tuple[int, int]) -> bytes:
        i, pos = at
        op = ops[i]
        if op.kind == MD5SUMS:
            out = derived.get(i, b"")
            if len(out) != op.out_len or op.exp_len:
                raise PatchFormatError("md5sums entry produced the wrong size")
            return out
        if op.kind == BASE:
            out = base[op.p4 : op.p4 + op.out_len]
            if len(out) != op.out_len or op.exp_len:
                raise PatchFormatError("recipe entry copies from outside the old file")
            return out
        if op.descendants:
            # The plain input is what the nested ops rebuild from this op's stream range.
            plain: bytes | memoryview = plains.pop(i, None) or plain_of(i, pos)
        else:
            plain = view[pos : pos + op.exp_len]
        return _recompress(op, plain, proven)

    if threads < 2 or len(starts) < 2:
        yield from map(piece, starts)
        return
    with ThreadPoolExecutor(threads) as pool:
        ahead: deque[Future[bytes]] = deque()
        try:
            for at in starts:
                ahead.append(pool.submit(piece, at))
                if len(ahead) > 2 * threads:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            for fut in ahead:
                fut.cancel()


def _recompress(op: Op, plain: bytes | memoryview, proven: Proven | None = None) -> bytes:
    known = proven.get(_proof_key(op, plain)) if proven and op.kind != RAW else None
    if known is not None:
        out = known
    elif op.kind == RAW:
        out = bytes(plain)
    elif op.kind == DEFLATE:
        try:
            c = zlib.compressobj(op.p1, zlib.DEFLATED, op.p3, op.p2)
        except (ValueError, zlib.error) as exc:
            raise PatchFormatError(f"bad deflate parameters ({exc})") from exc
        out = b"".join(_feed(c, plain))
    elif op.kind == LZMA2:
        try:
            lz = _lzma2_compressor(
                op.p1 & 0x7F | (lzma.PRESET_EXTREME if op.p1 & 0x80 else 0), op.p4
            )
            out = b"".join(_feed(lz, plain))
        except (ValueError, lzma.LZMAError) as exc:
            raise PatchFormatError(f"bad lzma2 parameters ({exc})") from exc
    elif op.kind == GZIP_CLI:
        out = gzip_cli(bytes(plain), op.p1)
    elif op.kind == MINIZ:
        out = _miniz(plain, op.p1)
    else:
        try:
            out = _zstd_compress(bytes(plain), op.p1, op.p2)
        except zstandard.ZstdError as exc:
            raise PatchFormatError(f"bad zstd parameters ({exc})") from exc
    if len(out) != op.out_len:
        raise PatchFormatError("recipe entry produced the wrong size")
    return out


def leaves(ops: list[Op]) -> list[Op]:
    """The ops whose stream bytes are literally in the stream (not nested containers)."""
    return [op for op in ops if not op.descendants]


def top_level(ops: list[Op]) -> list[Op]:
    """The ops that write the file itself (not those nested inside another)."""
    out, i = [], 0
    while i < len(ops):
        out.append(ops[i])
        i += 1 + ops[i].descendants
    return out


def member_key(name: str) -> str:
    """Name used to pair members across versions (version numbers blanked)."""
    return re.sub(r"\d+(?:[._+~-]\w+)*", "#", name)
