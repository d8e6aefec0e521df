"""The part methods: copy, bsdiff (in memory) and zstd windows (bounded memory).

bsdiff4 parts share three streams (control triples, diff bytes, extra bytes) that
are zstd-compressed once for the whole patch, so that the mostly-zero diff bytes
and the new literal bytes of all parts compress together. Window parts compress
one window of the target with zstd, using the matching window of the base as a
raw-content dictionary: zstd indexes the whole dictionary only when its
hash/chain tables are large enough, hence the explicit ``hash_log``/``chain_log``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import BinaryIO

import bsdiff4.core
import zstandard

from patches import elf
from patches.errors import PatchFormatError
from patches.format import (
    METHOD_BSDIFF,
    METHOD_COPY,
    METHOD_ELF,
    METHOD_ZSTD_WINDOW,
    Part,
    check_zstd_frame,
    decode_triples,
)

# bsdiff4's control triples: three 8-byte little-endian sign-magnitude integers.
CTRL_SIZE = 24
# Files (or archive members) up to this size are diffed with bsdiff4 in memory
# (bsdiff4 needs about 18x the base size); bigger ones use zstd windows.
BSDIFF_LIMIT = 48 << 20
PARALLEL_MIN = 1 << 20  # members at least this big are diffed in worker processes
WINDOW = 32 << 20  # target bytes per zstd window
MARGIN = 8 << 20  # base bytes either side of the aligned base window
WINDOW_LEVEL = 9
WINDOW_LOG = 27  # >= base window + target window
_TABLE_LOG = 25  # zstd indexes 2**(TABLE_LOG+1) bytes of dictionary: more than a base window

ReadFn = Callable[[int, int], bytes]


def _encode_triple(x: int, y: int, z: int) -> bytes:
    return b"".join(bsdiff4.core.encode_int64(v) for v in (x, y, z))


def bsdiff_streams(base: bytes, target: bytes) -> tuple[bytes, bytes, bytes]:
    """bsdiff4's (control, diff, extra) for ``target`` against ``base``."""
    if base == target and base:
        return b"", b"", b""
    if not base:
        # Nothing to match against: all literal (compressed later with the extras).
        return (_encode_triple(0, len(target), 0) if target else b""), b"", target
    result: tuple[bytes, bytes, bytes] = bsdiff4.core.diff(base, target)
    return result


# What a unit's diff produced: (method, image pairing triples (elf only), ctrl, diff, extra,
# the re-aimed base the diff was taken against (elf only)).
Streams = tuple[int, bytes, bytes, bytes, bytes, bytes]
# Re-aimed bases kept for the creator's self-check: at most this many bytes in all.
AIMED_KEEP = 128 << 20


def _estimate(data: bytes) -> int:
    """Roughly what a stream adds to the patch once compressed (to pick a method)."""
    return len(zstandard.ZstdCompressor(level=3).compress(data)) if data else 0


def unit_streams(base: bytes, target: bytes) -> Streams:
    """The best diff of one unit: bsdiff, or for units holding x86-64 ELF images the
    address-aware ELF method (:mod:`patches.elf`) when that compresses smaller.

    The ELF method's alignment also makes the plain bsdiff candidate (same control
    triples, diff taken against the base as it is), so both cost one suffix sort; the
    extra stream is the same for both, the diff streams decide.
    """
    if base and target and base != target and elf.has_elf(base) and elf.has_elf(target):
        made = elf.diff_both(base, target)
        if made is not None:
            pairing, ctrl, aimed, plain, extra, adjusted = made
            if len(pairing) + _estimate(aimed) < _estimate(plain):
                return (METHOD_ELF, pairing, ctrl, aimed, extra, adjusted)
            return (METHOD_BSDIFF, b"", ctrl, plain, extra, b"")
    return (METHOD_BSDIFF, b"", *bsdiff_streams(base, target), b"")


def _unit_job(job: tuple[bytes, bytes]) -> Streams:
    return unit_streams(*job)


class DiffPool:
    """:func:`unit_streams` of many (base, target) pairs, on ``workers`` processes.

    bsdiff4 holds the GIL, so threads do not help. Pairs of at least
    :data:`PARALLEL_MIN` bytes go to worker processes, largest first (for balance).
    They start at once, so the caller can do other work meanwhile; :meth:`results` then
    diffs the small pairs in this process and collects everything in input order.
    With ``background`` even a single big pair goes to a worker: the caller has other
    work to overlap with it.
    """

    def __init__(
        self, jobs: list[tuple[bytes, bytes]], workers: int, *, background: bool = False
    ) -> None:
        self._jobs = jobs
        big = sorted(
            (i for i, (b, t) in enumerate(jobs) if len(b) + len(t) >= PARALLEL_MIN),
            key=lambda i: -(len(jobs[i][0]) + len(jobs[i][1])),
        )
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[int, Future[Streams]] = {}
        if workers >= 2 and len(big) >= (1 if background else 2):
            # fork: workers need nothing pickled but the pairs, and spawn would re-import
            # the caller's __main__ (breaking unguarded scripts). Callers are single-threaded.
            ctx = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            self._futures = {i: self._pool.submit(_unit_job, jobs[i]) for i in big}

    def results(self) -> list[Streams]:
        """The streams of every pair, in input order."""
        try:
            local = {
                i: unit_streams(b, t)
                for i, (b, t) in enumerate(self._jobs)
                if i not in self._futures
            }
            return [
                self._futures[i].result() if i in self._futures else local[i]
                for i in range(len(self._jobs))
            ]
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (waiting for running tasks; queued ones are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def parallel_bsdiff(jobs: list[tuple[bytes, bytes]], workers: int) -> list[Streams]:
    """:func:`unit_streams` of many pairs, in input order (see :class:`DiffPool`)."""
    return DiffPool(jobs, workers).results()


class DiffBuilder:
    """Accumulates parts while a patch is created."""

    def __init__(self, payload_sink: BinaryIO) -> None:
        self.parts: list[Part] = []
        self.ctrl = bytearray()
        self.diff = bytearray()
        self.extra = bytearray()
        # elf.aimed_key -> re-aimed base, for checking the patch (see PartApplier).
        self.aimed: dict[bytes, bytes] = {}
        self._sink = payload_sink

    def add_bsdiff(
        self,
        base: bytes,
        base_offset: int,
        target: bytes,
        streams: Streams | None = None,
    ) -> None:
        """Diff ``target`` against ``base`` (which sits at ``base_offset`` in the base stream).

        ``streams`` is :func:`unit_streams` of the two when already computed (in a
        worker process, see :func:`parallel_bsdiff`).
        """
        if base == target and base:
            self.parts.append(Part(METHOD_COPY, base_offset, len(base), len(target)))
            return
        method, loads, control, bdiff, bextra, adjusted = (
            streams if streams is not None else unit_streams(base, target)
        )
        if adjusted and sum(map(len, self.aimed.values())) + len(adjusted) <= AIMED_KEEP:
            self.aimed[elf.aimed_key(base, loads, control)] = adjusted
        # ELF parts: the image pairing (new starts, load segments) precedes the triples.
        self.ctrl += loads + control
        self.diff += bdiff
        self.extra += bextra
        n = len(control) // CTRL_SIZE
        self.parts.append(
            Part(method, base_offset, len(base), len(target), n, len(loads) // CTRL_SIZE)
        )

    def add_windows(
        self,
        read_base: ReadFn,
        base_offset: int,
        base_len: int,
        read_target: ReadFn,
        target_len: int,
    ) -> None:
        """Diff a large range window by window; memory stays around 3 windows + zstd tables."""
        for start in range(0, target_len, WINDOW):
            length = min(WINDOW, target_len - start)
            target = read_target(start, length)
            # Align proportionally, so growth or shrinkage of the file is followed.
            centre = start * base_len // target_len if target_len else 0
            lo = max(0, min(centre - MARGIN, base_len - length - 2 * MARGIN))
            hi = min(base_len, centre + length + MARGIN)
            if start + length <= base_len and read_base(base_offset + start, length) == target:
                self.parts.append(Part(METHOD_COPY, base_offset + start, length, length))
                continue
            base = read_base(base_offset + lo, hi - lo)
            payload = _window_compressor(base).compress(target)
            self._sink.write(payload)
            self.parts.append(
                Part(METHOD_ZSTD_WINDOW, base_offset + lo, len(base), length, len(payload))
            )


def _window_compressor(base: bytes) -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters.from_level(
        WINDOW_LEVEL, window_log=WINDOW_LOG, hash_log=_TABLE_LOG, chain_log=_TABLE_LOG
    )
    if not base:
        return zstandard.ZstdCompressor(compression_params=params)
    d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(compression_params=params, dict_data=d)


class PartApplier:
    """Rebuilds target-stream pieces from parts, checking every bound first."""

    def __init__(
        self,
        ctrl: bytes,
        diff: bytes,
        extra: bytes,
        base_len: int,
        aimed: dict[bytes, bytes] | None = None,
    ) -> None:
        """``aimed``: re-aimed bases by :func:`patches.elf.aimed_key`, already computed by
        the same code from the same bytes (the creator checking its own patch)."""
        if len(ctrl) % CTRL_SIZE:
            raise PatchFormatError("control stream has a partial entry")
        self._ctrl = memoryview(ctrl)
        self._diff = memoryview(diff)
        self._extra = memoryview(extra)
        self._c = self._d = self._e = 0
        self._base_len = base_len
        self._aimed = aimed or {}

    def check_part(self, part: Part) -> None:
        """Bounds that do not depend on data: the base range must exist."""
        if part.base_offset + part.base_length > self._base_len:
            raise PatchFormatError("part refers outside the base")
        if part.method == METHOD_COPY and part.base_length != part.out_length:
            raise PatchFormatError("copy part with differing lengths")
        if part.method not in (METHOD_COPY, METHOD_BSDIFF, METHOD_ZSTD_WINDOW, METHOD_ELF):
            raise PatchFormatError(f"unknown part method {part.method}")
        if part.method == METHOD_ELF and not 1 <= part.b <= elf.MAX_IMAGES * (1 + elf.MAX_LOADS):
            raise PatchFormatError("elf part with a bad image pairing size")
        if part.method == METHOD_ZSTD_WINDOW and (
            part.out_length > WINDOW or part.base_length > WINDOW + 2 * MARGIN + WINDOW
        ):
            raise PatchFormatError("zstd window exceeds limit")

    def apply(self, part: Part, base: bytes, payload: bytes) -> bytes:
        """The bytes ``part`` produces from its base range (and window payload)."""
        if part.method == METHOD_COPY:
            return base
        if part.method in (METHOD_BSDIFF, METHOD_ELF):
            return self._bsdiff(part, base)
        return _window_decompress(base, payload, part.out_length)

    def _take_ctrl(self, triples: int) -> bytes:
        """The next ``triples`` control triples' bytes."""
        end = self._c + triples * CTRL_SIZE
        if end > len(self._ctrl):
            raise PatchFormatError("control stream too short")
        raw = bytes(self._ctrl[self._c : end])
        self._c = end
        return raw

    def _bsdiff(self, part: Part, base: bytes) -> bytes:
        pairing = self._take_ctrl(part.b) if part.method == METHOD_ELF else b""
        raw = self._take_ctrl(part.a)
        control = decode_triples(raw)
        # Validate what bsdiff4.core.patch would otherwise trust.
        old_pos = out = n_diff = n_extra = 0
        for x, y, z in control:
            if x < 0 or y < 0 or old_pos < 0 or old_pos + x > len(base):
                raise PatchFormatError("bsdiff control entry out of range")
            old_pos += x + z
            out += x + y
            n_diff += x
            n_extra += y
        if out != part.out_length:
            raise PatchFormatError("bsdiff part output length mismatch")
        if self._d + n_diff > len(self._diff) or self._e + n_extra > len(self._extra):
            raise PatchFormatError("diff or extra stream too short")
        bdiff = bytes(self._diff[self._d : self._d + n_diff])
        bextra = bytes(self._extra[self._e : self._e + n_extra])
        self._d += n_diff
        self._e += n_extra
        if part.method == METHOD_ELF:
            known = self._aimed.get(elf.aimed_key(base, pairing, raw)) if self._aimed else None
            try:
                base = known if known is not None else elf.adjusted_base(base, pairing, raw)
            except ValueError as exc:
                raise PatchFormatError(f"elf part: {exc}") from exc
        result: bytes = bsdiff4.core.patch(base, part.out_length, raw, bdiff, bextra)
        return result

    def finish(self) -> None:
        """Every stream byte must have been used: leftovers mean a corrupt patch."""
        if (self._c, self._d, self._e) != (len(self._ctrl), len(self._diff), len(self._extra)):
            raise PatchFormatError("bsdiff streams have unused bytes")


def _window_decompress(base: bytes, payload: bytes, out_len: int) -> bytes:
    check_zstd_frame(payload, out_len, "zstd window")
    try:
        if base:
            d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            dec = zstandard.ZstdDecompressor(dict_data=d, max_window_size=1 << WINDOW_LOG)
        else:
            dec = zstandard.ZstdDecompressor(max_window_size=1 << WINDOW_LOG)
        out = dec.decompress(payload, max_output_size=out_len)
    except zstandard.ZstdError as exc:
        raise PatchFormatError(f"corrupt zstd window ({exc})") from exc
    if len(out) != out_len:
        raise PatchFormatError("zstd window output length mismatch")
    return out
