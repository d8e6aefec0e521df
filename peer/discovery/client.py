"""The asyncio driver of :class:`~.exchange.Exchange`: real HTTP with httpx.

Proxies: by default httpx reads ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``
and ``NO_PROXY`` from the environment (``trust_env``); an explicit ``proxy``
URL overrides the environment for every request. Everything is one plain
HTTP(S) request per exchange, so it passes any proxy that passes ``POST``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx

from .errors import DiscoveryError
from .exchange import MAX_BODY, Exchange

PEX_PATH = "/.well-known/webseed/pex"
PEER_HEADER = "webseed-peer"


def make_client(
    proxy: str | None = None, *, timeout: float = 10.0, trust_env: bool = True
) -> httpx.AsyncClient:
    """An httpx client for discovery traffic (environment proxies honoured unless ``proxy``)."""
    return httpx.AsyncClient(
        proxy=proxy,
        trust_env=trust_env,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        follow_redirects=False,
    )


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The response body, refusing (``DiscoveryError``) more than ``cap`` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise DiscoveryError("response too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise DiscoveryError("response too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_pex(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> bytes:
    """``GET`` peer ``url``'s published pex list (capped); ``DiscoveryError`` on failure."""
    target = url.rstrip("/") + PEX_PATH
    limit = client.timeout if timeout is None else httpx.Timeout(timeout)
    try:
        async with client.stream("GET", target, headers=headers, timeout=limit) as response:
            if response.status_code != 200:
                raise DiscoveryError(f"{target}: HTTP {response.status_code}")
            return await read_capped(response, MAX_BODY)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"{target}: {type(exc).__name__}: {exc}") from exc


async def exchange_with(
    client: httpx.AsyncClient, url: str, body: bytes, *, peer_id: str = ""
) -> bytes:
    """One exchange: ``POST`` our message to ``url``'s pex endpoint, return its answer.

    A peer whose server only publishes (``GET`` pex, e.g. a plain webseed server
    without the discovery wrapper) answers 405; we then ``GET`` its list.
    """
    headers = {"content-type": "application/json"}
    if peer_id:
        headers[PEER_HEADER] = peer_id
    target = url.rstrip("/") + PEX_PATH
    try:
        async with client.stream("POST", target, content=body, headers=headers) as response:
            if response.status_code in (404, 405):
                await response.aclose()
            elif response.status_code != 200:
                raise DiscoveryError(f"{target}: HTTP {response.status_code}")
            else:
                return await read_capped(response, MAX_BODY)
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"{target}: {type(exc).__name__}: {exc}") from exc
    return await fetch_pex(client, url, headers=headers)


class Gossiper:
    """Runs exchange rounds against real peers until stopped."""

    def __init__(
        self,
        exchange: Exchange,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        refresh: Callable[[float], None] | None = None,
    ) -> None:
        self.exchange = exchange
        self.client = client
        self.clock = clock
        self.refresh = refresh
        self.errors: list[str] = []

    async def ask(self, url: str) -> None:
        """Exchange with one contact and feed the result to the state machine."""
        own = self.exchange.store.own
        body = self.exchange.payload()
        try:
            answer = await exchange_with(
                self.client, url, body, peer_id=own.peer if own is not None else ""
            )
        except DiscoveryError as exc:
            self.errors = [*self.errors[-31:], str(exc)]
            self.exchange.on_failure(url, self.clock())
            return
        self.exchange.on_response(url, answer, self.clock())

    async def round(self, limit: int | None = None) -> int:
        """Ask every contact due now, concurrently; returns how many were asked."""
        now = self.clock()
        if self.refresh is not None:
            self.refresh(now)
        urls = self.exchange.due(now, limit)
        await asyncio.gather(*(self.ask(u) for u in urls))
        return len(urls)

    async def run(self, stop: asyncio.Event, *, max_rounds: int = 1_000_000) -> None:
        """Rounds until ``stop`` is set, sleeping until the next contact is due."""
        for _ in range(max_rounds):
            if stop.is_set():
                return
            await self.round()
            delay = self.exchange.next_wakeup(self.clock()) - self.clock()
            delay = min(max(delay, 0.05), self.exchange.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
