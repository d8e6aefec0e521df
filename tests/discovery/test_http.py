"""Real HTTP on loopback: nodes served by Hypercorn in-process, real httpx clients.

Each node binds its own 127.0.N.1 address so the store's per-/24 caps see
distinct ranges, as distinct hosts would be.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from peer.discovery.announce import build
from peer.discovery.client import PEX_PATH, exchange_with, make_client, read_capped
from peer.discovery.errors import DiscoveryError
from peer.discovery.exchange import MAX_BODY, decode_message, encode_message
from peer.discovery.node import DiscoveryNode, NodeConfig, download_urls
from peer.discovery.relay import AUTH_HEADER, RELAY_PREFIX, poll_auth, relay_url
from peer.incentives.identity import PeerIdentity


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout))


class Running:
    """Nodes started in this event loop; stopped (and awaited) on exit."""

    def __init__(self) -> None:
        self.stops: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, node: DiscoveryNode) -> DiscoveryNode:
        stop, ready = asyncio.Event(), asyncio.Event()
        self.stops.append(stop)
        self.tasks.append(asyncio.create_task(node.run(stop, ready=lambda _n: ready.set())))
        await ready.wait()
        return node

    async def close(self) -> None:
        for stop in self.stops:
            stop.set()
        await asyncio.gather(*self.tasks)


async def wait_until(pred: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def node(n: int, **kw: Any) -> DiscoveryNode:
    cfg = NodeConfig(host=f"127.0.{n}.1", interval=0.2, **kw)
    return DiscoveryNode(PeerIdentity.generate(), cfg, kw.pop("inner", None))


def test_three_nodes_discover_by_exchange() -> None:
    async def go() -> None:
        r = Running()
        try:
            a = await r.start(node(11))
            b = await r.start(node(12, bootstrap=a.urls))
            c = await r.start(node(13, bootstrap=b.urls))  # knows only b
            nodes = [a, b, c]
            await wait_until(lambda: all(len(x.store) == 2 for x in nodes))
            # a never had a contact: it learnt both others from their POSTs alone.
            assert {x.peer for x in a.store.all()} == {b.identity.peer_id, c.identity.peer_id}
            async with httpx.AsyncClient() as client:
                got = await client.get(a.urls[0] + PEX_PATH)
                listed = decode_message(got.content)
                assert listed[0]["peer"] == a.identity.peer_id and len(listed) == 3
                assert (await client.put(a.urls[0] + PEX_PATH)).status_code == 405
                assert (await client.get(a.urls[0] + "/nothing")).status_code == 404
        finally:
            await r.close()

    run(go)


def test_peer_started_before_its_bootstrap_peer_still_joins_it() -> None:
    """C asks A before A listens (refused), then D, E, F (fanout 3) find C: C must join A.

    Before the fix C backed off 30 s from its bootstrap contact and then, with
    ``fanout`` other contacts always due, never asked it again: C, D, E, F were
    an island for good (the netns swarm's flake: p3 started before p1 listened).
    """
    import socket

    async def go() -> None:
        r = Running()
        reserve = socket.socket()  # A's address, bound but not listening: refused
        try:
            reserve.bind(("127.0.41.1", 0))
            port = reserve.getsockname()[1]
            c = await r.start(node(42, bootstrap=[f"http://127.0.41.1:{port}"]))
            others = [await r.start(node(43 + i, bootstrap=c.urls)) for i in range(3)]
            await wait_until(lambda: all(c.store.get(o.identity.peer_id) for o in others))
            assert any("ConnectError" in e for e in c.gossiper.errors)
            reserve.close()
            a = await r.start(node(41, port=port))
            await wait_until(lambda: c.store.get(a.identity.peer_id) is not None, timeout=8)
            await wait_until(lambda: all(o.store.get(a.identity.peer_id) for o in others))
        finally:
            reserve.close()
            await r.close()

    run(go)


def test_refresh_resigns_before_expiry() -> None:
    n = node(14, lifetime=100)
    sock = n.bind()
    assert sock is not None
    sock.close()
    first = n.announce(1_800_000_000)
    n.refresh(1_800_000_010)
    assert n.store.own == first
    n.refresh(1_800_000_060)
    assert n.store.own is not None and n.store.own.issued == 1_800_000_060
    assert n.announce(1_800_000_061, have=["c" * 64]).have == ("c" * 64,)


def test_forged_expired_oversized_posts_rejected() -> None:
    async def go() -> None:
        r = Running()
        try:
            a = await r.start(node(21))
            liar, victim = PeerIdentity.generate(), PeerIdentity.generate()
            now = a.clock()
            good = build(liar, ["http://127.0.99.1:1"], now).to_json()
            forged = build(victim, ["http://127.0.98.1:1"], now).to_json() | {
                "urls": ["http://127.0.97.1:1"]
            }
            expired = build(PeerIdentity.generate(), ["http://127.0.96.1:1"], now - 4000)
            async with httpx.AsyncClient() as client:
                resp = await client.post(
                    a.urls[0] + PEX_PATH,
                    content=encode_message([good, forged, expired.to_json()]),
                )
                assert resp.status_code == 200
                assert decode_message(resp.content)[0]["peer"] == a.identity.peer_id
                assert {x.peer for x in a.store.all()} == {liar.peer_id}
                assert a.store.counts["rejected"] == 2
                big = await client.post(a.urls[0] + PEX_PATH, content=b" " * (MAX_BODY + 1))
                assert big.status_code == 413
                junk = await client.post(a.urls[0] + PEX_PATH, content=b"junk")
                assert junk.status_code == 200 and len(a.store) == 1
        finally:
            await r.close()

    run(go)


def test_outbound_only_peer_serves_through_relay(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / digest).write_bytes(data)

    async def go() -> None:
        r = Running()
        try:
            relay = await r.start(node(31))
            outbound = DiscoveryNode(
                PeerIdentity.generate(),
                NodeConfig(
                    outbound_only=True,
                    relays=relay.urls,
                    bootstrap=relay.urls,
                    have=[digest],
                    interval=0.2,
                ),
                Starlette(routes=[Mount("/", StaticFiles(directory=tmp_path))]),
            )
            await r.start(outbound)
            downloader = await r.start(node(32, bootstrap=relay.urls))
            oid = outbound.identity.peer_id
            await wait_until(lambda: downloader.store.get(oid) is not None)
            ann = downloader.store.get(oid)
            assert ann is not None and ann.outbound_only and ann.urls == ()
            await wait_until(lambda: relay.hub is not None and relay.hub.connected(oid))
            (base,) = download_urls(ann)
            assert base == relay_url(relay.urls[0], oid)
            async with httpx.AsyncClient(timeout=20) as client:
                whole = await client.get(f"{base}/{digest}")
                assert whole.status_code == 200
                assert hashlib.sha256(whole.content).hexdigest() == digest
                part = await client.get(f"{base}/{digest}", headers={"range": "bytes=10-19"})
                assert part.status_code == 206 and part.content == data[10:20]
                assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
                head = await client.head(f"{base}/{digest}")
                assert head.status_code == 200 and head.content == b""
                missing = await client.get(f"{base}/{'0' * 64}")
                assert missing.status_code == 404
                nobody = relay_url(relay.urls[0], PeerIdentity.generate().peer_id)
                assert (await client.get(f"{nobody}/{digest}")).status_code == 502
                assert (await client.get(relay.urls[0] + RELAY_PREFIX + "/x")).status_code == 404
                bad = await client.get(
                    relay.urls[0] + RELAY_PREFIX + "/poll",
                    headers={"webseed-peer": oid, AUTH_HEADER: "1.AAAA"},
                )
                assert bad.status_code == 403
                stray = await client.post(relay.urls[0] + RELAY_PREFIX + "/reply/nope")
                assert stray.status_code == 404
            assert outbound.workers[0].served >= 3
            assert relay.hub is not None and relay.hub.relayed_bytes >= len(data)
        finally:
            await r.close()

    run(go)


_KEEP: list[object] = []  # listening sockets must outlive _serve (GC would close the fd)


async def _serve(app: Any) -> tuple[str, asyncio.Event, asyncio.Task[None]]:
    import socket

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    _KEEP.append(sock)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop, task


def test_client_against_publish_only_and_broken_servers() -> None:
    ident = PeerIdentity.generate()
    own = build(ident, ["http://127.0.5.1:1"], 0).to_json()

    async def pex(_request: Any) -> JSONResponse:
        return JSONResponse({"announcements": [own]})

    async def boom(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("no", status_code=500)

    async def huge(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("x" * (MAX_BODY + 10))

    app = Starlette(
        routes=[
            Route(PEX_PATH, pex, methods=["GET"]),
            Route("/b" + PEX_PATH, boom, methods=["GET", "POST"]),
            Route("/h" + PEX_PATH, huge, methods=["GET", "POST"]),
            Route("/g" + PEX_PATH, boom, methods=["GET"]),
        ]
    )

    async def go() -> None:
        url, stop, task = await _serve(app)
        try:
            async with make_client(timeout=5) as client:
                body = await exchange_with(client, url, b"{}", peer_id=ident.peer_id)
                assert json.loads(body)["announcements"][0]["peer"] == ident.peer_id
                for path in ("/b", "/h", "/g"):
                    with pytest.raises(DiscoveryError):
                        await exchange_with(client, url + path, b"{}")
                with pytest.raises(DiscoveryError):
                    await exchange_with(client, "http://127.0.0.1:1", b"{}")
                async with client.stream("GET", url + "/h" + PEX_PATH) as resp:
                    with pytest.raises(DiscoveryError, match="too large"):
                        await read_capped(resp, 10)
        finally:
            stop.set()
            await task

    run(go)


def test_poll_auth_checks() -> None:
    from peer.discovery.relay import check_poll_auth
    from webseed.errors import SignatureError

    ident = PeerIdentity.generate()
    value = poll_auth(ident, 1000)
    check_poll_auth(ident.peer_id, value, 1100)
    for peer, val, now in [
        (ident.peer_id, value, 2000),
        (ident.peer_id, "x.y", 1000),
        ("nobody", value, 1000),
        (ident.peer_id, "1000.!!", 1000),
        (PeerIdentity.generate().peer_id, value, 1000),
    ]:
        with pytest.raises(SignatureError):
            check_poll_auth(peer, val, now)


def test_wraps_the_real_webseed_server(tmp_path: Path) -> None:
    """DiscoveryApp around webseed.server's app: GET pex from the gossip store (the
    server's PexSource hook), POST pex and relay by the wrapper, artifacts by the server,
    also relayed for an outbound-only peer running the same server app."""
    from webseed.server.app import create_app

    repo = tmp_path / "repo"
    (repo / "releases").mkdir(parents=True)
    data = os.urandom(200_000)
    (repo / "releases" / "a.bin").write_bytes(data)

    async def go() -> None:
        r = Running()
        try:
            reach = node(41)
            reach.app.inner = create_app(repo, pex=reach.store)
            await r.start(reach)
            out = DiscoveryNode(
                PeerIdentity.generate(),
                NodeConfig(outbound_only=True, relays=reach.urls, interval=0.2),
                create_app(repo),
            )
            await r.start(out)
            other = build(PeerIdentity.generate(), ["http://127.0.42.1:1"], reach.clock())
            async with httpx.AsyncClient(timeout=20) as client:
                posted = await client.post(
                    reach.urls[0] + PEX_PATH, content=encode_message([other.to_json()])
                )
                assert posted.status_code == 200
                # GET pex is answered by the server itself, from the store it was given.
                got = decode_message((await client.get(reach.urls[0] + PEX_PATH)).content)
                assert [a["peer"] for a in got] == [reach.identity.peer_id, other.peer]
                direct = await client.get(reach.urls[0] + "/releases/a.bin")
                assert direct.content == data
                oid = out.identity.peer_id
                await wait_until(lambda: reach.hub is not None and reach.hub.connected(oid))
                via = await client.get(
                    relay_url(reach.urls[0], oid) + "/releases/a.bin",
                    headers={"range": "bytes=100-199"},
                )
                assert via.status_code == 206 and via.content == data[100:200]
                assert "etag" in via.headers
        finally:
            await r.close()

    run(go)
