"""Racing connects to several mirrors, Happy-Eyeballs style (RFC 8305 in spirit).

:func:`race_first_byte` starts a ranged GET to the best mirror, then every
``stagger`` seconds (or at once when an attempt fails) to the next one, and
keeps the first that passes the header checks and delivers its first body
bytes. The others are cancelled and their connections closed. A dead or
black-holed mirror therefore costs one stagger interval, never a time-out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from geo.checks import CheckFailed, check_headers, looks_like_html
from geo.errors import NoMirrorError
from geo.health import Failure
from geo.mirror import Mirror

DEFAULT_STAGGER = 0.075  # seconds between attempt starts
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=5.0, write=5.0, pool=3.0)


def classify(exc: BaseException) -> tuple[Failure, str]:
    """Map an exception from an attempt to a :class:`Failure` and a short detail."""
    if isinstance(exc, CheckFailed):
        return exc.kind, exc.detail
    if isinstance(exc, httpx.TimeoutException):
        return Failure.TIMEOUT, type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError):
        return Failure.CONNECT, str(exc) or type(exc).__name__
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return Failure.TRUNCATED, str(exc) or type(exc).__name__
    return Failure.PROTOCOL, f"{type(exc).__name__}: {exc}"


@dataclass
class AttemptFailure:
    """Why one mirror lost a race (or broke off a transfer)."""

    mirror: Mirror
    kind: Failure
    detail: str


class MirrorStream:
    """An open ranged response from the mirror that won a race.

    Iterate :meth:`chunks` for the body (the first chunk, already read, comes
    first); always :meth:`aclose` (or use ``async with``).
    """

    def __init__(
        self,
        mirror: Mirror,
        response: httpx.Response,
        body: AsyncIterator[bytes],
        first_chunk: bytes,
        length: int,
        started: float,
        first_byte_at: float,
    ) -> None:
        self.mirror = mirror
        self.response = response
        self.length = length
        self.started = started
        self.first_byte_at = first_byte_at
        self.received = 0
        self._body = body
        self._first: bytes | None = first_chunk

    @property
    def rtt(self) -> float:
        """Seconds from the request's start to its first body byte."""
        return self.first_byte_at - self.started

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body; raises :class:`CheckFailed` (TRUNCATED / WRONG_LENGTH) on a bad length."""
        if self._first is not None:
            first, self._first = self._first, None
            self.received += len(first)
            yield first
        async for chunk in self._body:
            self.received += len(chunk)
            if self.received > self.length:
                raise CheckFailed(Failure.WRONG_LENGTH, f"more than {self.length} bytes")
            yield chunk
        if self.received < self.length:
            raise CheckFailed(Failure.TRUNCATED, f"{self.received} of {self.length} bytes")

    async def aclose(self) -> None:
        await self.response.aclose()

    async def __aenter__(self) -> MirrorStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def open_range(
    client: httpx.AsyncClient,
    mirror: Mirror,
    path: str,
    start: int,
    end: int,
    *,
    total_size: int | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    sniff_html: bool = True,
) -> MirrorStream:
    """GET bytes ``start..end`` (inclusive) of ``path`` from one mirror, up to its first bytes.

    ``sniff_html`` refuses a body that starts like an HTML page (turn it off for
    artifacts that are HTML themselves). Raises :class:`CheckFailed` or an
    ``httpx`` error; see :func:`classify`.
    """
    request = client.build_request(
        "GET",
        mirror.url_for(path),
        # identity: the checks compare lengths on the wire with the range asked for.
        headers={"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"},
        timeout=timeout,
    )
    started = time.perf_counter()
    response = await client.send(request, stream=True)
    try:
        length = check_headers(response.status_code, response.headers, start, end, total_size)
        body = response.aiter_raw()
        first = b""
        while not first:  # skip empty frames; a body that ends here is truncated
            try:
                first = await body.__anext__()
            except StopAsyncIteration:
                raise CheckFailed(Failure.TRUNCATED, "empty body") from None
        if sniff_html and looks_like_html(first):
            raise CheckFailed(Failure.HTML_PAGE, "body is an HTML page")
        return MirrorStream(mirror, response, body, first, length, started, time.perf_counter())
    except BaseException:
        await response.aclose()
        raise


async def race_first_byte(
    client: httpx.AsyncClient,
    mirrors: Sequence[Mirror],
    path: str,
    start: int,
    end: int,
    *,
    total_size: int | None = None,
    stagger: float = DEFAULT_STAGGER,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    deadline: float = 10.0,
    failures: list[AttemptFailure] | None = None,
    sniff_html: bool = True,
) -> MirrorStream:
    """Race ranged GETs to ``mirrors`` (best first); return the first to deliver bytes.

    Attempt *i+1* starts ``stagger`` seconds after attempt *i*, or immediately
    when an attempt fails. Losers are cancelled. Failed attempts are appended
    to ``failures`` (if given) so the caller can feed its policy. Raises
    :class:`NoMirrorError` when every attempt failed or ``deadline`` passed.
    """
    lost: list[AttemptFailure] = failures if failures is not None else []
    if not mirrors:
        raise NoMirrorError("no mirror to try")
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    pending: dict[asyncio.Task[MirrorStream], Mirror] = {}
    next_index = 0

    def launch() -> None:
        nonlocal next_index
        mirror = mirrors[next_index]
        next_index += 1
        task = asyncio.create_task(
            open_range(
                client,
                mirror,
                path,
                start,
                end,
                total_size=total_size,
                timeout=timeout,
                sniff_html=sniff_html,
            )
        )
        pending[task] = mirror

    launch()
    winner: MirrorStream | None = None
    try:
        while pending or next_index < len(mirrors):
            remaining = give_up - loop.time()
            if remaining <= 0:
                break
            if not pending:
                launch()
                continue
            wait_for = min(stagger, remaining) if next_index < len(mirrors) else remaining
            done, _ = await asyncio.wait(
                pending, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED
            )
            failed_now = False
            for task in done:
                mirror = pending.pop(task)
                exc = task.exception()
                if exc is None:
                    if winner is None:
                        winner = task.result()
                    else:  # a second finisher in the same instant: not needed
                        await task.result().aclose()
                    continue
                kind, detail = classify(exc)
                lost.append(AttemptFailure(mirror, kind, detail))
                failed_now = True
            if winner is not None:
                return winner
            # Start the next attempt when the stagger interval expired or one failed.
            if (not done or failed_now) and next_index < len(mirrors):
                launch()
    finally:
        for task in pending:
            task.cancel()
        for task, mirror in pending.items():
            try:
                stream = await task
            except asyncio.CancelledError:
                if winner is None and loop.time() >= give_up:
                    lost.append(AttemptFailure(mirror, Failure.TIMEOUT, "race deadline"))
            except Exception as exc:
                kind, detail = classify(exc)
                lost.append(AttemptFailure(mirror, kind, detail))
            else:
                await stream.aclose()
    raise NoMirrorError(
        f"no mirror answered {path} bytes {start}-{end}",
        {f.mirror.url: f"{f.kind.value}: {f.detail}" for f in lost},
    )
