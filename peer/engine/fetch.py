"""One ranged GET: stream the body chunk by chunk into bounded buffers, report events.

Each request holds at most one chunk's bytes in memory at a time; a chunk is
handed to the store (which verifies it) as soon as its last byte arrives.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx

from peer.engine.budget import ByteBudget
from peer.scheduler import (
    BytesReceived,
    Event,
    Request,
    RequestDone,
    RequestFailed,
    RequestStarted,
)

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)

#: Verify and store one chunk from a source, and report the outcome (ChunkVerified or
#: ChunkCorrupt) even if the request is cancelled meanwhile.
ChunkSink = Callable[[int, memoryview, str], Awaitable[None]]
Push = Callable[[Event], None]


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only; dates are ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


def check_content_range(value: str | None, start: int, end: int, size: int) -> str | None:
    """Why a 206's ``Content-Range`` does not match what was asked, or None if it does."""
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        return f"bad Content-Range {value!r}"
    first, last, total = int(m[1]), int(m[2]), m[3]
    if (first, last + 1) != (start, end):
        return f"Content-Range {value!r} is not the range asked ({start}-{end - 1})"
    if total != "*" and int(total) != size:
        return f"Content-Range {value!r}: the source's file is not {size} bytes"
    return None


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    req: Request,
    *,
    size: int,
    chunk_size: int,
    sink: ChunkSink,
    push: Push,
    on_whole: Callable[[bool], None] | None = None,
    budget: ByteBudget | None = None,
    on_version: Callable[[str], None] | None = None,
) -> int:
    """Run request ``req`` against ``url``; report progress through ``push``.

    ``on_whole(True/False)`` brackets a whole-file answer to a range request.

    Returns the body bytes consumed. Cancellation propagates with no event
    (the scheduler already forgot a request it cancelled).
    """
    headers = {"Range": f"bytes={req.start}-{req.end - 1}", "Accept-Encoding": "identity"}
    got = 0
    try:
        async with client.stream("GET", url, headers=headers) as resp:
            status = resp.status_code
            if on_version is not None:
                on_version(resp.http_version)
            if status == 416:
                push(RequestFailed(req.id, "missing", f"HTTP {status}"))
                return 0
            if status in (404, 410):
                push(RequestFailed(req.id, "gone", f"HTTP {status}"))
                return 0
            if status in (429, 503):
                wait = retry_after(resp.headers.get("retry-after"))
                push(RequestFailed(req.id, "busy", f"HTTP {status}", wait))
                return 0
            problem: str | None = None
            if status == 206:
                problem = check_content_range(
                    resp.headers.get("content-range"), req.start, req.end, size
                )
            elif status != 200:
                problem = f"HTTP {status}"
            if problem is not None:
                push(RequestFailed(req.id, "error", problem))
                return 0
            push(RequestStarted(req.id))
            # 200: the server ignores Range (python -m http.server does). Rather than
            # discard the bytes before the range, keep every chunk of the whole file
            # the store still lacks, to the end: one pass, nothing fetched twice.
            whole = status == 200
            if whole and on_whole is not None:
                on_whole(True)
            try:
                got = await _stream(
                    resp, req, whole, size, chunk_size, sink, push, budget or ByteBudget()
                )
            finally:
                if whole and on_whole is not None:
                    on_whole(False)
    except (httpx.HTTPError, OSError) as exc:
        push(RequestFailed(req.id, "error", f"{type(exc).__name__}: {exc}"))
        return got
    push(RequestDone(req.id))
    return got


async def _stream(
    resp: httpx.Response,
    req: Request,
    whole: bool,
    size: int,
    chunk_size: int,
    sink: ChunkSink,
    push: Push,
    budget: ByteBudget,
) -> int:
    """Feed the body into one chunk buffer at a time; returns body bytes consumed."""
    pos = 0 if whole else req.start  # file offset of the next body byte
    stop = size if whole else req.end
    first = pos
    chunk = pos // chunk_size
    held = 0
    try:
        held = _chunk_len(chunk, chunk_size, size)
        await budget.acquire(held)
        buf = bytearray(held)
        filled = 0
        async for piece in resp.aiter_raw():
            view = memoryview(piece)[: stop - pos]
            if not view:
                break
            # Progress counts bytes inside the requested range; outside it (whole-file
            # answers) a zero-byte report keeps the scheduler's stall timer quiet.
            inside = max(0, min(pos + len(view), req.end) - max(pos, req.start))
            push(BytesReceived(req.id, inside))
            pos += len(view)
            while view:
                take = min(len(view), len(buf) - filled)
                buf[filled : filled + take] = view[:take]
                filled += take
                view = view[take:]
                if filled == len(buf):
                    await sink(chunk, memoryview(buf), req.source)
                    del buf
                    budget.release(held)
                    held = 0
                    chunk += 1
                    if chunk * chunk_size >= stop:
                        break
                    held = _chunk_len(chunk, chunk_size, size)
                    await budget.acquire(held)
                    buf = bytearray(held)
                    filled = 0
            if pos >= stop:
                break
    finally:
        if held:
            budget.release(held)
    return pos - first


def _chunk_len(chunk: int, chunk_size: int, size: int) -> int:
    return min(chunk_size, size - chunk * chunk_size)
