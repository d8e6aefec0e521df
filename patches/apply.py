"""Applying patches: verify the patch and the base, rebuild into a temp file, check, rename.

The old file is only read. The output appears at ``dest`` only after its size and
sha256 match the target recorded in the patch (``os.replace``, atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from patches import archive
from patches.errors import PatchBaseMismatchError, PatchFormatError, PatchTargetMismatchError
from patches.format import (
    HEADER,
    MAX_RECIPE,
    METHOD_ZSTD_WINDOW,
    PART,
    TRANSFORM_ARCHIVE,
    XZ_MAGIC,
    Header,
    Part,
    decompress,
)
from patches.methods import BSDIFF_LIMIT, PartApplier


def read_header(patch: Path | str) -> Header:
    """The header of a patch file (checked for bounds, body not verified)."""
    with open(patch, "rb") as f:
        return Header.decode(f.read(HEADER.size))


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PatchFormatError(f"patch truncated in {what}")
    return data


def _verify_body(f: BinaryIO, header: Header) -> None:
    h = hashlib.sha256()
    while block := f.read(1 << 20):
        h.update(block)
    if h.digest() != header.body_sha256:
        raise PatchFormatError("patch corrupted or truncated (body sha256 mismatch)")
    f.seek(HEADER.size)


def _check_base(old: Path, header: Header) -> None:
    if old.stat().st_size != header.base_size:
        raise PatchBaseMismatchError("this patch was made for another base file (size differs)")
    h = hashlib.sha256()
    with open(old, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    if h.digest() != header.base_sha256:
        raise PatchBaseMismatchError("this patch was made for another base file (sha256 differs)")


def apply_patch(
    old: Path | str,
    patch: Path | str,
    dest: Path | str,
    *,
    proven: archive.Proven | None = None,
    aimed: dict[bytes, bytes] | None = None,
) -> None:
    """Apply ``patch`` to ``old`` and atomically write the verified result to ``dest``.

    ``proven``: compressions the caller has already run and checked (the creator's
    probe, see :attr:`patches.archive.Expansion.proven`), reused rather than repeated;
    ``aimed``: re-aimed ELF bases the caller computed (see :func:`patches.elf.aimed_key`).
    """
    old, patch, dest = Path(old), Path(patch), Path(dest)
    with open(patch, "rb") as f:
        header = Header.decode(f.read(HEADER.size))
        _verify_body(f, header)
        _check_base(old, header)
        recipe_raw = _read_exact(f, header.recipe_len, "recipe")
        streams = [
            decompress(_read_exact(f, comp, name), raw, name)
            for name, (raw, comp) in (
                ("control stream", header.ctrl_len),
                ("diff stream", header.diff_len),
                ("extra stream", header.extra_len),
            )
        ]
        table = decompress(
            _read_exact(f, header.parts_len, "part table"),
            header.part_count * PART.size,
            "part table",
        )
        parts = [Part(*PART.unpack_from(table, i * PART.size)) for i in range(header.part_count)]
        applier = PartApplier(streams[0], streams[1], streams[2], header.base_stream_len, aimed)
        total = 0
        for part in parts:
            applier.check_part(part)
            if part.method != METHOD_ZSTD_WINDOW and part.base_length > BSDIFF_LIMIT:
                raise PatchFormatError("in-memory part exceeds limit")
            total += part.out_length
        if total != header.target_stream_len:
            raise PatchFormatError("parts do not add up to the target")
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _rebuild(old, f, header, recipe_raw, parts, applier, out, proven)
                out.flush()
                os.fsync(out.fileno())
            if digest != header.target_sha256 or os.path.getsize(tmp) != header.target_size:
                raise PatchTargetMismatchError("patched file does not match the target digest")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _rebuild(
    old: Path,
    f: BinaryIO,
    header: Header,
    recipe_raw: bytes,
    parts: list[Part],
    applier: PartApplier,
    out: BinaryIO,
    proven: archive.Proven | None,
) -> bytes:
    h = hashlib.sha256()
    if header.transform == TRANSFORM_ARCHIVE:
        old_data = old.read_bytes()
        ops = archive.decode_recipe(
            decompress_bounded(recipe_raw),
            header.target_stream_len,
            header.target_size,
            len(old_data),
        )
        base = archive.expand_base(old_data)
        if len(base) != header.base_stream_len:
            raise PatchFormatError("base expands to a different size than the patch expects")
        target = bytearray()
        for part in parts:
            payload = _payload(f, part)
            target += applier.apply(
                part, base[part.base_offset : part.base_offset + part.base_length], payload
            )
        applier.finish()
        for piece in archive.rebuild(ops, bytes(target), base=old_data, proven=proven):
            h.update(piece)
            out.write(piece)
        return h.digest()
    with open(old, "rb") as fo:
        for part in parts:
            payload = _payload(f, part)
            base = os.pread(fo.fileno(), part.base_length, part.base_offset)
            piece = applier.apply(part, base, payload)
            h.update(piece)
            out.write(piece)
    applier.finish()
    return h.digest()


def _payload(f: BinaryIO, part: Part) -> bytes:
    if part.method != METHOD_ZSTD_WINDOW:
        return b""
    if part.a > part.out_length + (1 << 20):
        raise PatchFormatError("zstd window payload exceeds limit")
    return _read_exact(f, part.a, "window payload")


def decompress_bounded(recipe: bytes) -> bytes:
    """Decompress the recipe (zstd or xz), refusing more than :data:`MAX_RECIPE` bytes."""
    if not recipe:
        return b""
    import io
    import lzma

    import zstandard

    try:
        if recipe.startswith(XZ_MAGIC):
            xz = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=1 << 28)
            raw = xz.decompress(recipe, max_length=MAX_RECIPE + 1)
        else:
            # Bounded read: a recipe that would expand past the limit never does in memory.
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(recipe))
            raw = reader.read(MAX_RECIPE + 1)
    except (zstandard.ZstdError, lzma.LZMAError) as exc:
        raise PatchFormatError(f"recipe: corrupt compressed data ({exc})") from exc
    if len(raw) > MAX_RECIPE:
        raise PatchFormatError("recipe exceeds limit")
    return raw
