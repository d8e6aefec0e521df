"""A discovery peer put together: identity, store, exchange, HTTP endpoints, relays.

:class:`DiscoveryNode` is what ``webseed serve`` (or a test process) runs next
to the artifact server: it listens (unless outbound-only), publishes and
refreshes its signed announcement, gossips on a timer, relays for
outbound-only peers, and — when it is outbound-only itself — long-polls its
relays so the peers that want its chunks can still get them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from peer.incentives.identity import PeerIdentity

from .announce import DEFAULT_LIFETIME, Announcement, build
from .asgi import ASGIApp, DiscoveryApp
from .client import Gossiper, make_client
from .exchange import Exchange
from .relay import RelayHub, RelayWorker, asgi_handler, relay_url
from .store import GossipStore, StoreLimits


def download_urls(ann: Announcement) -> list[str]:
    """Base URLs to fetch artifacts from the announced peer (its own, or via its relays)."""
    if ann.urls:
        return list(ann.urls)
    return [relay_url(r, ann.peer) for r in ann.relays]


@dataclass
class NodeConfig:
    """How a :class:`DiscoveryNode` listens, announces and gossips."""

    host: str = "127.0.0.1"
    port: int = 0
    #: URLs to announce; default: the bound address.
    public_urls: list[str] = field(default_factory=list)
    outbound_only: bool = False
    relays: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    have: list[str] = field(default_factory=list)
    interval: float = 60.0
    fanout: int = 3
    sample_size: int = 32
    #: Faster rounds (every interval/6) for the first few, to learn the swarm quickly.
    join_rounds: int = 12
    lifetime: int = DEFAULT_LIFETIME
    proxy: str | None = None
    relay_for_others: bool = True
    limits: StoreLimits = field(default_factory=StoreLimits)


class DiscoveryNode:
    """One peer's discovery side, serving ``inner`` (its artifact app) alongside."""

    def __init__(
        self,
        identity: PeerIdentity,
        config: NodeConfig,
        inner: ASGIApp | None = None,
        *,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.identity = identity
        self.config = config
        self.inner = inner
        self.clock = clock
        self.store = GossipStore(config.limits, clock=clock, self_peer=identity.peer_id)
        self.exchange = Exchange(
            self.store,
            interval=config.interval,
            fanout=config.fanout,
            sample_size=config.sample_size,
            join_rounds=config.join_rounds,
        )
        for url in config.bootstrap:
            self.exchange.add_contact(url, bootstrap=True)
        hub_wanted = config.relay_for_others and not config.outbound_only
        self.hub = RelayHub(clock=clock) if hub_wanted else None
        self.app = DiscoveryApp(self.exchange, inner, hub=self.hub)
        self.client = client or make_client(config.proxy)
        self.urls: list[str] = []
        self.workers = [
            RelayWorker(r, identity, asgi_handler(inner), self.client, clock=clock)
            for r in (config.relays if config.outbound_only and inner is not None else [])
        ]
        self.gossiper = Gossiper(self.exchange, self.client, clock=clock, refresh=self.refresh)

    def announce(self, now: float, have: Iterable[str] | None = None) -> Announcement:
        """Sign and publish a fresh self-announcement."""
        if have is not None:
            self.config.have = list(have)
        ann = build(
            self.identity,
            [] if self.config.outbound_only else self.urls,
            now,
            have=self.config.have,
            outbound_only=self.config.outbound_only,
            relays=self.config.relays if self.config.outbound_only else [],
            lifetime=self.config.lifetime,
        )
        self.store.set_own(ann)
        return ann

    def refresh(self, now: float) -> None:
        """Re-sign our announcement once half its lifetime has passed."""
        own = self.store.own
        if own is None or now >= own.issued + (own.expires - own.issued) / 2:
            self.announce(now)

    def bind(self) -> socket.socket | None:
        """Bind the listening socket (none when outbound-only) and fix our URLs."""
        if self.config.outbound_only:
            return None
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(256)
        sock.set_inheritable(True)
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        self.urls = self.config.public_urls or [f"http://{host}:{port}"]
        return sock

    async def run(
        self, stop: asyncio.Event, ready: Callable[[DiscoveryNode], Any] | None = None
    ) -> None:
        """Serve, gossip and relay until ``stop`` is set."""
        sock = self.bind()
        self.announce(self.clock())
        tasks: list[asyncio.Task[None]] = []
        if sock is not None:
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"fd://{sock.fileno()}"]
            config.accesslog = None
            config.errorlog = None
            config.graceful_timeout = 1.0
            tasks.append(
                asyncio.create_task(serve(self.app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
            )
        tasks.append(asyncio.create_task(self.gossiper.run(stop)))
        tasks += [asyncio.create_task(w.run(stop, poll_timeout=20.0)) for w in self.workers]
        if ready is not None:
            ready(self)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
            for task in tasks:
                task.cancel()
            await self.client.aclose()
            if sock is not None:
                with contextlib.suppress(OSError):  # Hypercorn may have closed the fd already
                    sock.close()
