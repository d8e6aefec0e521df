"""Creating patches: archive-aware when the archive can be rebuilt exactly, raw otherwise.

Every archive patch is applied once at creation time and compared byte for byte
with the target; if that fails (or the archive is unsafe), the raw method is used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from patches import archive
from patches.apply import apply_patch
from patches.errors import ArchiveError, PatchError
from patches.format import (
    TRANSFORM_ARCHIVE,
    TRANSFORM_IDENTITY,
    Header,
    compressions,
    smallest,
)
from patches.methods import BSDIFF_LIMIT, DiffBuilder, DiffPool, ReadFn, parallel_bsdiff

# Worker processes for bsdiff; the CI and the target machines have 2 cores.
WORKERS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class PatchInfo:
    """What :func:`create_patch` made."""

    path: Path
    size: int
    transform: str  # "archive" or "raw"
    reproduced: float  # share of compressed target bytes rebuilt exactly (archive only)


def _sha256_file(path: Path) -> tuple[bytes, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            n += len(block)
    return h.digest(), n


def create_patch(
    old: Path | str, new: Path | str, out: Path | str, *, verify: bool = True
) -> PatchInfo:
    """Write a patch turning ``old`` into ``new`` to ``out`` (atomically) and describe it."""
    old, new, out = Path(old), Path(new), Path(out)
    base_sha, base_size = _sha256_file(old)
    target_sha, target_size = _sha256_file(new)
    ids = (base_sha, base_size, target_sha, target_size)
    candidates: list[tuple[bytes, str, float]] = []
    proven: archive.Proven = {}
    aimed: dict[bytes, bytes] = {}
    if target_size <= archive.MAX_EXPANDED and base_size <= archive.MAX_EXPANDED:
        old_data, new_data = old.read_bytes(), new.read_bytes()
        if archive.is_archive(new_data):
            try:
                body = _archive_patch(old_data, new_data, ids, proven, aimed)
            except ArchiveError:
                body = None
            if body is not None:
                candidates.append(body)
        # A poorly reproduced archive may still lose to the raw method: try both then.
        if not candidates or candidates[0][2] < 0.9:
            candidates.append(_raw_patch_small(old_data, new_data, ids))
    else:
        candidates.append(_raw_patch_big(old, new, ids))
    candidates.sort(key=lambda c: len(c[0]))
    for blob, transform, reproduced in candidates:
        if _install(blob, transform, old, out, target_sha, verify, proven, aimed):
            return PatchInfo(out, len(blob), transform, reproduced)
    # The archive patch did not reproduce the target: a raw diff always does.
    raw = _raw_patch_small(old.read_bytes(), new.read_bytes(), ids)
    if not _install(*raw[:2], old, out, target_sha, verify, proven, aimed):  # pragma: no cover
        raise PatchError("no patch method reproduced the target")
    return PatchInfo(out, len(raw[0]), "raw", 0.0)


def _install(
    blob: bytes,
    transform: str,
    old: Path,
    out: Path,
    target_sha: bytes,
    verify: bool,
    proven: archive.Proven,
    aimed: dict[bytes, bytes],
) -> bool:
    """Write ``blob`` to ``out`` atomically unless it is an archive patch that fails to apply.

    The check is the client's whole apply, except that compressions the probe already
    ran and compared (``proven``) and ELF bases already re-aimed by the same code from
    the same bytes (``aimed``) are not computed again.
    """
    tmp_dir = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".wspatch-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        if (
            verify
            and transform == "archive"
            and not _reproduces(old, Path(tmp), target_sha, proven, aimed)
        ):
            return False
        os.replace(tmp, out)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _reproduces(
    old: Path, patch: Path, target_sha: bytes, proven: archive.Proven, aimed: dict[bytes, bytes]
) -> bool:
    with tempfile.TemporaryDirectory(dir=patch.parent) as d:
        dest = Path(d) / "check"
        try:
            apply_patch(old, patch, dest, proven=proven, aimed=aimed)
        except PatchError:
            return False
        return _sha256_file(dest)[0] == target_sha


def _archive_patch(
    old_data: bytes,
    new_data: bytes,
    ids: tuple[bytes, int, bytes, int],
    proven: archive.Proven,
    aimed: dict[bytes, bytes],
) -> tuple[bytes, str, float]:
    base = archive.base_expansion(old_data)
    base_stream, base_units = base.stream, _units_of_base(old_data, base)
    pool, guessed = _speculate(old_data, new_data, base_stream, base_units)
    try:
        target = archive.expand(new_data, probe=True, base=old_data)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    proven.update(target.proven)
    plan, jobs = _plan(target, base_stream, base_units)
    if pool is not None and guessed == _identity(target):
        diffs = iter(pool.results())
    else:
        if pool is not None:
            pool.close()
        diffs = iter(parallel_bsdiff(jobs, WORKERS))
    with tempfile.TemporaryFile() as sink:
        builder = DiffBuilder(sink)
        for off, blen, unit in plan:
            if _windowed(blen, unit):
                builder.add_windows(_slicer(base_stream), off, blen, _slicer(unit), len(unit))
            else:
                builder.add_bsdiff(base_stream[off : off + blen], off, unit, next(diffs))
        sink.seek(0)
        payloads = sink.read()
    aimed.update(builder.aimed)
    top = archive.top_level(target.ops)
    compressed = [op.out_len for op in top if op.kind != archive.RAW]
    raw_comp = sum(op.out_len for op in top if op.kind == archive.RAW)
    reproduced = sum(compressed) / max(1, sum(compressed) + raw_comp)
    blob = _assemble(
        TRANSFORM_ARCHIVE,
        ids,
        len(base_stream),
        len(target.stream),
        archive.encode_recipe(target.ops),
        builder,
        payloads,
    )
    return blob, "archive", reproduced


# Archives up to this size start their diffs before probing (memory: one more expansion).
SPECULATE_MAX = 64 << 20


def _speculate(
    old_data: bytes, new_data: bytes, base_stream: bytes, base_units: dict[str, tuple[int, int]]
) -> tuple[DiffPool | None, tuple[bytes, list[tuple[str, int]]] | None]:
    """Start the diffs on the new archive expanded without probing.

    Finding the compressor settings (zlib levels...) is slow and rarely changes the
    expanded stream: the diffs run meanwhile and are kept if probing yields the same
    stream and units (compared by :func:`_identity`), else made again.
    """
    if len(new_data) > SPECULATE_MAX:
        return None, None
    try:
        guess = archive.expand(new_data, probe=False, base=old_data)
    except ArchiveError:
        return None, None
    jobs = _plan(guess, base_stream, base_units)[1]
    return DiffPool(jobs, WORKERS, background=True), _identity(guess)


def _identity(expansion: archive.Expansion) -> tuple[bytes, list[tuple[str, int]]]:
    return hashlib.sha256(expansion.stream).digest(), _units(archive.leaves(expansion.ops))


def _plan(
    target: archive.Expansion, base_stream: bytes, base_units: dict[str, tuple[int, int]]
) -> tuple[list[tuple[int, int, bytes]], list[tuple[bytes, bytes]]]:
    """Each target unit with its base range, and the (base, unit) pairs to bsdiff."""
    pos = 0
    plan: list[tuple[int, int, bytes]] = []
    for name, length in _units(archive.leaves(target.ops)):
        unit = target.stream[pos : pos + length]
        pos += length
        # Same name first, else the same name with version numbers blanked.
        off, blen = base_units.get(name) or base_units.get(archive.member_key(name), (0, 0))
        plan.append((off, blen, unit))
    jobs = [
        (base_stream[off : off + blen], unit)
        for off, blen, unit in plan
        if not _windowed(blen, unit)
    ]
    return plan, jobs


def _windowed(base_len: int, unit: bytes) -> bool:
    return len(unit) > BSDIFF_LIMIT or base_len > BSDIFF_LIMIT


def _slicer(buf: bytes) -> ReadFn:
    def read(offset: int, length: int) -> bytes:
        return buf[offset : offset + length]

    return read


def _units(ops: list[archive.Op]) -> list[tuple[str, int]]:
    """Consecutive ops of one member form a unit, diffed against that member's old version.

    Ops without stream bytes (members copied from the old file) make no unit.
    """
    units: list[tuple[str, int]] = []
    for op in ops:
        if not op.exp_len:
            continue
        if units and units[-1][0] == op.name:
            units[-1] = (op.name, units[-1][1] + op.exp_len)
        else:
            units.append((op.name, op.exp_len))
    return units


def _units_of_base(old_data: bytes, base: archive.Expansion) -> dict[str, tuple[int, int]]:
    if not base.ops:  # not an archive: one unit, the whole file
        return {"<file>": (0, len(old_data))}
    found: dict[str, tuple[int, int]] = {}
    pos = 0
    for name, length in _units(archive.leaves(base.ops)):
        found.setdefault(name, (pos, length))
        found.setdefault(archive.member_key(name), (pos, length))
        pos += length
    return found


def _raw_patch_small(
    old_data: bytes, new_data: bytes, ids: tuple[bytes, int, bytes, int]
) -> tuple[bytes, str, float]:
    with tempfile.TemporaryFile() as sink:
        builder = DiffBuilder(sink)
        if len(old_data) <= BSDIFF_LIMIT and len(new_data) <= BSDIFF_LIMIT:
            builder.add_bsdiff(old_data, 0, new_data)
        else:
            builder.add_windows(
                lambda o, n: old_data[o : o + n],
                0,
                len(old_data),
                lambda o, n: new_data[o : o + n],
                len(new_data),
            )
        sink.seek(0)
        payloads = sink.read()
    return _assemble(TRANSFORM_IDENTITY, ids, ids[1], ids[3], b"", builder, payloads), "raw", 0.0


def _raw_patch_big(
    old: Path, new: Path, ids: tuple[bytes, int, bytes, int]
) -> tuple[bytes, str, float]:
    """Windows read straight from the files: memory stays bounded for any size."""
    with open(old, "rb") as fo, open(new, "rb") as fn, tempfile.TemporaryFile() as sink:
        builder = DiffBuilder(sink)
        builder.add_windows(
            lambda o, n: os.pread(fo.fileno(), n, o),
            0,
            ids[1],
            lambda o, n: os.pread(fn.fileno(), n, o),
            ids[3],
        )
        sink.seek(0)
        payloads = sink.read()
    return _assemble(TRANSFORM_IDENTITY, ids, ids[1], ids[3], b"", builder, payloads), "raw", 0.0


def _assemble(
    transform: int,
    ids: tuple[bytes, int, bytes, int],
    base_stream_len: int,
    target_stream_len: int,
    recipe: bytes,
    builder: DiffBuilder,
    payloads: bytes,
) -> bytes:
    raw = [
        recipe,
        bytes(builder.ctrl),
        bytes(builder.diff),
        bytes(builder.extra),
        # Offsets grow steadily and lengths repeat: the table compresses well (numpy: 82 KB
        # -> 7).
        b"".join(p.encode() for p in builder.parts),
    ]
    # xz and zstd release the GIL: every (section, codec) runs side by side, biggest
    # section first (a stable sort: each section's outputs stay in compressions' order).
    tasks = sorted(
        ((i, make) for i, data in enumerate(raw) for make in compressions(data)),
        key=lambda task: -len(raw[task[0]]),
    )
    outputs: list[list[bytes]] = [[] for _ in raw]
    with ThreadPoolExecutor(WORKERS) as pool:
        for i, running in [(i, pool.submit(make)) for i, make in tasks]:
            outputs[i].append(running.result())
    *sections, table = [smallest(out) for out in outputs]
    body = b"".join(sections) + table + payloads
    header = Header(
        transform=transform,
        base_size=ids[1],
        base_sha256=ids[0],
        target_size=ids[3],
        target_sha256=ids[2],
        base_stream_len=base_stream_len,
        target_stream_len=target_stream_len,
        recipe_len=len(sections[0]),
        ctrl_len=(len(builder.ctrl), len(sections[1])),
        diff_len=(len(builder.diff), len(sections[2])),
        extra_len=(len(builder.extra), len(sections[3])),
        part_count=len(builder.parts),
        parts_len=len(table),
        body_sha256=hashlib.sha256(body).digest(),
    )
    return header.encode() + body
