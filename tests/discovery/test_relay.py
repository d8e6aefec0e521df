"""Relay sessions on real loopback HTTP: polls that are abandoned, apps that hang.

The hub runs behind a real Hypercorn server on 127.0.0.1 (an ephemeral
port), the worker and the requesters are real httpx clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest

from peer.discovery.asgi import DiscoveryApp
from peer.discovery.exchange import Exchange
from peer.discovery.relay import (
    AUTH_HEADER,
    RELAY_PREFIX,
    RelayHub,
    RelayWorker,
    _Task,
    poll_auth,
    relay_url,
)
from peer.discovery.store import GossipStore
from peer.incentives.identity import PeerIdentity

from .test_http import _serve, run, wait_until


async def _answer(
    path: str, _headers: Mapping[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    if path == "hang":
        await asyncio.Event().wait()  # an app that never answers
    return 200, [("content-type", "text/plain")], f"served {path}".encode()


@contextlib.asynccontextmanager
async def _hub_server(hub: RelayHub, halt: asyncio.Event) -> AsyncIterator[str]:
    """The hub behind a real server; yields its URL. On the way out the test's workers
    are told to stop (``halt``) and the server is shut down."""
    url, stop, server = await _serve(
        DiscoveryApp(Exchange(GossipStore(clock=time.time)), None, hub=hub)
    )
    try:
        yield url
    finally:
        halt.set()
        stop.set()
        await server


def test_abandoned_poll_does_not_swallow_the_next_task() -> None:
    """A poll whose client left (restart, proxy cutting a held request) gives up.

    ASGI servers keep the app running after a disconnect; the hub's poll used to
    wait on, take the next request for the peer and answer into a closed
    connection: the requester got a 504 after ``timeout`` and the live worker
    never saw the request.
    """
    ident = PeerIdentity.generate()
    oid = ident.peer_id

    async def go() -> None:
        hub = RelayHub(timeout=4.0, poll_timeout=15.0)
        halt = asyncio.Event()
        async with _hub_server(hub, halt) as url, httpx.AsyncClient() as client:
            auth = {"webseed-peer": oid, AUTH_HEADER: poll_auth(ident, time.time())}
            with pytest.raises(httpx.ReadTimeout):  # httpx closes the connection
                await client.get(f"{url}{RELAY_PREFIX}/poll", headers=auth, timeout=0.3)
            await asyncio.sleep(0.3)  # the server has seen the close
            worker = RelayWorker(url, ident, _answer, client)
            polling = asyncio.create_task(worker.run(halt, poll_timeout=15.0))
            await wait_until(lambda: worker.polls >= 1)
            await asyncio.sleep(0.3)  # its poll has reached the hub
            started = time.monotonic()
            got = await client.get(f"{relay_url(url, oid)}/a", timeout=10)
            assert (got.status_code, got.content) == (200, b"served a")
            assert time.monotonic() - started < 2.0
            assert hub.abandoned_polls == 1
            # Held now: only the live worker's next poll.
            await wait_until(lambda: hub.sessions()[oid]["polling"] == 1)
            assert hub.sessions()[oid]["connected"] and worker.served == 1
            halt.set()
            await polling

    run(go)


def test_hung_app_answers_504_and_the_worker_polls_on() -> None:
    ident = PeerIdentity.generate()
    oid = ident.peer_id

    async def go() -> None:
        hub = RelayHub(timeout=10.0, poll_timeout=15.0)
        halt = asyncio.Event()
        async with _hub_server(hub, halt) as url, httpx.AsyncClient() as client:
            worker = RelayWorker(url, ident, _answer, client, handler_timeout=0.5)
            polling = asyncio.create_task(worker.run(halt, poll_timeout=15.0))
            await wait_until(lambda: hub.connected(oid))
            hung = await client.get(f"{relay_url(url, oid)}/hang", timeout=10)
            assert hung.status_code == 504  # from the worker, well before the hub's 10 s
            fine = await client.get(f"{relay_url(url, oid)}/b", timeout=10)
            assert (fine.status_code, fine.content) == (200, b"served b")
            state = worker.state()
            assert state["served"] == 2 and state["since_answer"] is not None
            halt.set()
            await polling

    run(go)


def test_poll_gone_in_the_instant_it_took_a_task_gives_it_back() -> None:
    ident = PeerIdentity.generate()
    oid = ident.peer_id

    async def go() -> None:
        hub = RelayHub(max_pending=2, poll_timeout=5.0)
        auth = poll_auth(ident, time.time())
        assert await hub.poll(oid, auth, gone=asyncio.sleep(0)) is None  # registers
        loop = asyncio.get_running_loop()
        task = _Task("t1", "x", {}, loop.create_future())
        hub._queues[oid].put_nowait(task)
        gone: asyncio.Future[None] = loop.create_future()
        gone.set_result(None)
        # The get() runs (and takes the task) while wait() yields; the poller is gone.
        assert await hub.poll(oid, auth, gone=gone) is None
        assert hub._queues[oid].qsize() == 1 and hub.abandoned_polls == 2
        assert await hub.poll(oid, auth) == {"id": "t1", "path": "x", "headers": {}}
        # Given back into a queue that filled up meanwhile: the requester hears at once.
        for i in range(2):
            hub._queues[oid].put_nowait(_Task(f"f{i}", "y", {}, loop.create_future()))
        hub._give_back(oid, task)
        assert task.done.result()[0] == 503
        errors = RelayWorker("http://127.0.0.1:1", ident, _answer, httpx.AsyncClient())
        stop = asyncio.Event()
        runner = asyncio.create_task(errors.run(stop, max_polls=2))
        await wait_until(lambda: len(errors.errors) >= 1)
        stop.set()
        await runner
        assert "ConnectError" in errors.state()["errors"][0]
        await errors.client.aclose()

    run(go)
