"""The patch container: a fixed header, a recipe, shared bsdiff streams and parts.

Layout (all integers big-endian)::

    header   HEADER struct (see :data:`HEADER`), ends with sha256 of the body
    body     recipe (zstd)  | ctrl stream (zstd) | diff stream (zstd) | extra stream (zstd)
             | part table (zstd/xz, PART struct x part_count) | window payloads, in part order

Parts rebuild the *target stream* from the *base stream*, in order. With the
identity transform the streams are the files themselves; with the archive
transform they are the expanded archives and the recipe recompresses the target
stream into the exact target file. See docs/patches.md.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Callable
from dataclasses import dataclass

import zstandard

from patches.errors import PatchFormatError

MAGIC = b"\x89WSPATCH"
VERSION = 2

TRANSFORM_IDENTITY = 0
TRANSFORM_ARCHIVE = 1

METHOD_COPY = 1
METHOD_BSDIFF = 2
METHOD_ZSTD_WINDOW = 3
METHOD_ELF = 4  # bsdiff against the base with its x86-64 address fields re-aimed (elf.py)
METHODS = {
    METHOD_COPY: "copy",
    METHOD_BSDIFF: "bsdiff",
    METHOD_ZSTD_WINDOW: "zstd-window",
    METHOD_ELF: "elf-bsdiff",
}

# magic, version, transform, flags, base size, base sha256, target size, target sha256,
# base stream len, target stream len, recipe len, 3 x (raw, compressed) stream lens,
# part count, compressed part table len, body sha256
HEADER = struct.Struct(">8sHBBQ32sQ32sQQQQQQQQQIQ32s")
# method, base offset, base length, output length, a, b (method specific)
PART = struct.Struct(">BQQQQQ")

# Limits that bound memory and work when reading an untrusted patch.
MAX_FILE_SIZE = 1 << 46  # 64 TiB
MAX_STREAM = 1 << 31  # expanded archives and in-memory bsdiff streams
MAX_RECIPE = 1 << 26
MAX_PARTS = 1 << 22
MAX_WINDOW_PAYLOAD = 1 << 31


def decode_triples(ctrl: bytes) -> list[tuple[int, int, int]]:
    """bsdiff4's control triples: three 8-byte little-endian sign-magnitude integers each."""
    return [
        (_decode_int64(ctrl, o), _decode_int64(ctrl, o + 8), _decode_int64(ctrl, o + 16))
        for o in range(0, len(ctrl), 24)
    ]


def _decode_int64(b: bytes, o: int) -> int:
    v = int.from_bytes(b[o : o + 8], "little")
    return -(v & ~(1 << 63)) if v >> 63 else v


@dataclass(frozen=True)
class Part:
    """One step of rebuilding the target stream from the base stream.

    ``a``/``b`` are: bsdiff = (control triples, unused); elf-bsdiff = (control triples,
    load-segment triples before them); zstd-window = (payload length, unused); copy = unused.
    """

    method: int
    base_offset: int
    base_length: int
    out_length: int
    a: int = 0
    b: int = 0

    def encode(self) -> bytes:
        """The part's table entry."""
        return PART.pack(
            self.method, self.base_offset, self.base_length, self.out_length, self.a, self.b
        )


@dataclass(frozen=True)
class Header:
    """The fixed-size patch header."""

    transform: int
    base_size: int
    base_sha256: bytes
    target_size: int
    target_sha256: bytes
    base_stream_len: int
    target_stream_len: int
    recipe_len: int
    ctrl_len: tuple[int, int]
    diff_len: tuple[int, int]
    extra_len: tuple[int, int]
    part_count: int
    parts_len: int  # compressed part table
    body_sha256: bytes

    def encode(self) -> bytes:
        """The header's bytes."""
        return HEADER.pack(
            MAGIC,
            VERSION,
            self.transform,
            0,
            self.base_size,
            self.base_sha256,
            self.target_size,
            self.target_sha256,
            self.base_stream_len,
            self.target_stream_len,
            self.recipe_len,
            *self.ctrl_len,
            *self.diff_len,
            *self.extra_len,
            self.part_count,
            self.parts_len,
            self.body_sha256,
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        """Parse and bound-check a header; raises :class:`PatchFormatError`."""
        if len(data) < HEADER.size:
            raise PatchFormatError("patch truncated: header incomplete")
        f = HEADER.unpack(data[: HEADER.size])
        if f[0] != MAGIC:
            raise PatchFormatError("not a webseed patch (bad magic)")
        if f[1] != VERSION:
            raise PatchFormatError(f"unsupported patch version {f[1]}")
        if f[2] not in (TRANSFORM_IDENTITY, TRANSFORM_ARCHIVE) or f[3] != 0:
            raise PatchFormatError("unknown transform or flags")
        h = cls(
            transform=f[2],
            base_size=f[4],
            base_sha256=f[5],
            target_size=f[6],
            target_sha256=f[7],
            base_stream_len=f[8],
            target_stream_len=f[9],
            recipe_len=f[10],
            ctrl_len=(f[11], f[12]),
            diff_len=(f[13], f[14]),
            extra_len=(f[15], f[16]),
            part_count=f[17],
            parts_len=f[18],
            body_sha256=f[19],
        )
        h.check_limits()
        return h

    def check_limits(self) -> None:
        """Refuse sizes that would make applying unbounded."""
        if self.base_size > MAX_FILE_SIZE or self.target_size > MAX_FILE_SIZE:
            raise PatchFormatError("file size exceeds limit")
        if (
            self.transform == TRANSFORM_ARCHIVE
            and max(self.base_stream_len, self.target_stream_len) > MAX_STREAM
        ):
            raise PatchFormatError("expanded archive exceeds limit")
        if self.transform == TRANSFORM_IDENTITY and (
            self.base_stream_len != self.base_size
            or self.target_stream_len != self.target_size
            or self.recipe_len
        ):
            raise PatchFormatError("identity patch with inconsistent stream sizes")
        if (
            self.recipe_len > MAX_RECIPE
            or self.part_count > MAX_PARTS
            or self.parts_len > MAX_PARTS * PART.size
        ):
            raise PatchFormatError("recipe or part table exceeds limit")
        for raw, comp in (self.ctrl_len, self.diff_len, self.extra_len):
            if raw > MAX_STREAM or comp > MAX_STREAM:
                raise PatchFormatError("bsdiff stream exceeds limit")


XZ_MAGIC = b"\xfd7zXZ\x00"
# xz is slow (~1-3 MB/s at -9e): only for sections up to this, -9e up to
# XZ_EXTREME_LIMIT. Above 8 MiB zstd -19 has won every time measured (numpy's 11 MB and pandas'
# 24 MB diff streams, by 1-11%), so running xz there too cost CPU (pandas: 1.9 s) for
# nothing; libssl3's 6.6 MB diff stream still gets both (xz -9 wins by 145 bytes).
XZ_SECTION_LIMIT = 8 << 20
XZ_EXTREME_LIMIT = 6 << 20
_XZ_MEMLIMIT = 256 << 20


def _window_log(size: int) -> int:
    """zstd window of a section: the section itself (at least 128 KiB, at most 2 GiB)."""
    return max(17, min(31, (size - 1).bit_length()))


def compress(data: bytes, level: int = 19) -> bytes:
    """Compress a patch section: the smaller of zstd (whole-section window) and xz.

    xz -9e packs bsdiff's diff stream of rebuilt executables ~15% tighter than
    zstd -19 (libcrypto.so.3: 155 KB vs 182 KB); the reader tells them by magic.
    """
    return smallest([make() for make in compressions(data, level)])


def compressions(data: bytes, level: int = 19) -> list[Callable[[], bytes]]:
    """The candidate compressions of a section (zstd first), to run side by side.

    Both codecs release the GIL, so a caller with threads can run them at once and
    keep the :func:`smallest`; that is :func:`compress`'s result, byte for byte.
    """
    if not data:
        return [lambda: b""]
    wlog = _window_log(len(data))
    params = zstandard.ZstdCompressionParameters.from_level(level, window_log=wlog)
    found = [lambda: zstandard.ZstdCompressor(compression_params=params).compress(data)]
    if len(data) <= XZ_SECTION_LIMIT:
        preset = 9 | lzma.PRESET_EXTREME if len(data) <= XZ_EXTREME_LIMIT else 9
        # The dictionary no bigger than the section: the same sizes on every pair measured
        # (other bytes), and -9's 64 MiB match finder cost ~33 ms per section to set up,
        # which dominated small patches.
        dict_size = min(64 << 20, max(1 << 16, 1 << (len(data) - 1).bit_length()))
        filters = [{"id": lzma.FILTER_LZMA2, "preset": preset, "dict_size": dict_size}]
        found.append(
            lambda: lzma.compress(
                data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters
            )
        )
    return found


def smallest(outputs: list[bytes]) -> bytes:
    """The shortest output, the earliest on a tie (zstd: it decompresses faster)."""
    return min(outputs, key=len)


def check_zstd_frame(data: bytes, size: int, what: str) -> None:
    """Refuse a zstd frame that declares a content size other than ``size``."""
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise PatchFormatError(f"{what}: corrupt zstd frame header ({exc})") from exc
    if declared not in (-1, size):
        raise PatchFormatError(f"{what}: zstd frame declares {declared} bytes, expected {size}")


def decompress(data: bytes, raw_len: int, what: str) -> bytes:
    """Decompress a section whose size the header declared; never more than that."""
    if raw_len == 0:
        if data:
            raise PatchFormatError(f"{what}: data for an empty section")
        return b""
    try:
        if data.startswith(XZ_MAGIC):
            dec = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT)
            out = dec.decompress(data, max_length=raw_len + 1)
            if not dec.eof or dec.unused_data:
                raise PatchFormatError(f"{what}: xz section truncated or followed by data")
        else:
            # The frame's declared size and window are checked first: python-zstandard
            # allocates a declared content size up front (a forged one: MemoryError).
            check_zstd_frame(data, raw_len, what)
            window = 1 << _window_log(raw_len)
            out = zstandard.ZstdDecompressor(max_window_size=window).decompress(
                data, max_output_size=raw_len
            )
    except (zstandard.ZstdError, lzma.LZMAError) as exc:
        raise PatchFormatError(f"{what}: corrupt compressed data ({exc})") from exc
    if len(out) != raw_len:
        raise PatchFormatError(f"{what}: decompressed size differs from header")
    return out
