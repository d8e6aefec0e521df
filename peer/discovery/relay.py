"""How an outbound-only peer still serves: requests relayed over its own long poll.

A peer that cannot accept connections (NAT, firewall, proxy-only network)
picks a reachable peer R as its relay and keeps one outbound request open to
it (a long poll, which passes HTTP proxies)::

    O -> R   GET  /.well-known/webseed/relay/poll            (signed: Webseed-Relay-Auth)
    C -> R   GET  /.well-known/webseed/relay/<O's id>/<path>   (any GET a peer serves)
    R -> O   (answer to the poll) {"id": task, "path": path, "headers": {"range": ...}}
    O -> R   POST /.well-known/webseed/relay/reply/<task>      (status + headers + body)
    R -> C   the same status, headers and body

O announces itself with ``outbound_only: true`` and ``relays: [R's URL]``;
downloaders reach it at ``R/.well-known/webseed/relay/<O's id>``, a base URL
under which every normal peer path works. R does not need to trust O: chunks
are content-addressed and the downloader verifies them as from any peer.

Cost: every relayed byte crosses R's link twice (in from O, out to C), one
extra round trip per request, and one held connection per outbound-only
peer on R. R bounds all three: ``max_peers`` registered peers, ``max_pending``
queued requests per peer, ``max_body`` bytes per answer, ``timeout`` seconds.

A poll whose connection is gone gives up at once (``gone``, from the ASGI
``http.disconnect``): ASGI servers keep running an app after its client left,
so an abandoned poll would otherwise go on waiting and swallow the next task,
which nobody would then answer (the requester got a 504 after ``timeout``).
This happens whenever O restarts or a proxy or NAT cuts its held request.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from asyncio import FIRST_COMPLETED
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from peer.incentives.identity import PeerIdentity, b64d, b64e, is_peer_id, verify
from webseed.errors import SignatureError

from .client import PEER_HEADER
from .errors import DiscoveryError

RELAY_PREFIX = "/.well-known/webseed/relay"
AUTH_HEADER = "webseed-relay-auth"
DOMAIN = "webseed-relay-v1"
MAX_SKEW = 300
#: Request headers forwarded to the outbound-only peer, and response headers back.
FORWARD_REQUEST = ("range", "if-range", "if-none-match")
FORWARD_RESPONSE = (
    "content-type",
    "content-range",
    "etag",
    "accept-ranges",
    "cache-control",
    "webseed-manifest",
    "webseed-chunks",
    "webseed-missing",
)

Handler = Callable[[str, Mapping[str, str]], Awaitable[tuple[int, list[tuple[str, str]], bytes]]]


def relay_url(relay: str, peer_id: str) -> str:
    """The base URL at which ``peer_id`` is reachable through ``relay``."""
    return f"{relay.rstrip('/')}{RELAY_PREFIX}/{peer_id}"


def poll_auth(identity: PeerIdentity, now: float) -> str:
    """The ``Webseed-Relay-Auth`` header value proving a poll comes from ``identity``."""
    issued = int(now)
    sig = identity.sign(DOMAIN, f"poll\n{identity.peer_id}\n{issued}".encode())
    return f"{issued}.{b64e(sig)}"


def check_poll_auth(peer_id: str, value: str, now: float) -> None:
    """Raise :class:`SignatureError` unless ``value`` is a fresh poll signature of ``peer_id``."""
    issued_text, _, sig_text = value.partition(".")
    if not is_peer_id(peer_id) or not issued_text.isdigit() or len(issued_text) > 12:
        raise SignatureError("malformed relay auth")
    issued = int(issued_text)
    if abs(now - issued) > MAX_SKEW:
        raise SignatureError("stale relay auth")
    try:
        sig = b64d(sig_text)
    except ValueError as exc:
        raise SignatureError("malformed relay auth") from exc
    verify(peer_id, DOMAIN, f"poll\n{peer_id}\n{issued}".encode(), sig)


@dataclass
class _Task:
    id: str
    path: str
    headers: dict[str, str]
    done: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] = field(repr=False)


class RelayHub:
    """The reachable side: queues requests for outbound-only peers, matches their replies."""

    def __init__(
        self,
        *,
        max_peers: int = 64,
        max_pending: int = 16,
        max_body: int = 32 << 20,
        timeout: float = 30.0,
        poll_timeout: float = 20.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_peers = max_peers
        self.max_pending = max_pending
        self.max_body = max_body
        self.timeout = timeout
        self.poll_timeout = poll_timeout
        self.clock = clock
        self._queues: dict[str, asyncio.Queue[_Task]] = {}
        self._last_poll: dict[str, float] = {}
        self._polling: Counter[str] = Counter()
        self._tasks: dict[str, _Task] = {}
        self.relayed_bytes = 0
        self.abandoned_polls = 0

    def connected(self, peer_id: str) -> bool:
        """True if ``peer_id`` polled within the last poll period."""
        last = self._last_poll.get(peer_id)
        return last is not None and self.clock() - last <= self.poll_timeout + 10

    def sessions(self) -> dict[str, dict[str, Any]]:
        """Per registered peer: connected, polls held now, queued tasks, seconds since a poll."""
        now = self.clock()
        return {
            peer: {
                "connected": self.connected(peer),
                "polling": self._polling[peer],
                "queued": queue.qsize(),
                "since_poll": round(now - self._last_poll.get(peer, now), 1),
            }
            for peer, queue in self._queues.items()
        }

    async def poll(
        self, peer_id: str, auth: str, gone: Awaitable[object] | None = None
    ) -> dict[str, Any] | None:
        """An outbound-only peer waits for work; ``None`` after ``poll_timeout``.

        ``gone`` completes when the poller's connection closes: the poll then
        stops waiting, and a task it took in that instant goes back to the queue.
        """
        check_poll_auth(peer_id, auth, self.clock())
        queue = self._queues.get(peer_id)
        if queue is None:
            if len(self._queues) >= self.max_peers:
                raise DiscoveryError("relay full")
            queue = self._queues[peer_id] = asyncio.Queue(self.max_pending)
        self._last_poll[peer_id] = self.clock()
        self._polling[peer_id] += 1
        getter = asyncio.ensure_future(queue.get())
        watcher = asyncio.ensure_future(gone) if gone is not None else None
        waiting: set[asyncio.Future[Any]] = {getter} if watcher is None else {getter, watcher}
        try:
            await asyncio.wait(waiting, timeout=self.poll_timeout, return_when=FIRST_COMPLETED)
        except BaseException:  # cancelled (server shutting down): keep a task just taken
            self._give_back(peer_id, self._taken(getter))
            raise
        finally:
            self._last_poll[peer_id] = self.clock()
            self._polling[peer_id] -= 1
            for fut in waiting:
                fut.cancel()  # a get() cancelled before it returned leaves the item queued
            if watcher is not None and watcher.done() and not watcher.cancelled():
                watcher.exception()  # retrieved: a failed receive() also means gone
        task = self._taken(getter)
        if watcher is not None and watcher.done():
            self.abandoned_polls += 1
            self._give_back(peer_id, task)
            return None
        if task is None:
            return None
        return {"id": task.id, "path": task.path, "headers": task.headers}

    @staticmethod
    def _taken(getter: asyncio.Future[_Task]) -> _Task | None:
        if getter.done() and not getter.cancelled() and getter.exception() is None:
            return getter.result()
        return None

    def _give_back(self, peer_id: str, task: _Task | None) -> None:
        # Back of the queue (asyncio.Queue has no push-front); if it filled up
        # meanwhile, the requester learns at once instead of after ``timeout``.
        if task is None or task.done.done():
            return
        try:
            self._queues[peer_id].put_nowait(task)
        except asyncio.QueueFull:
            task.done.set_result((503, [("retry-after", "1")], b"relay queue full\n"))

    async def request(
        self, peer_id: str, path: str, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Forward one GET to ``peer_id`` and wait for its answer (502/504 if none)."""
        queue = self._queues.get(peer_id)
        if queue is None or not self.connected(peer_id):
            return 502, [("content-type", "text/plain")], b"peer not connected to this relay\n"
        fwd = {k: v for k, v in headers.items() if k in FORWARD_REQUEST}
        task = _Task(secrets.token_hex(16), path, fwd, asyncio.get_running_loop().create_future())
        try:
            queue.put_nowait(task)
        except asyncio.QueueFull:
            return 503, [("retry-after", "1")], b"relay queue full\n"
        self._tasks[task.id] = task
        try:
            return await asyncio.wait_for(task.done, timeout=self.timeout)
        except TimeoutError:
            return 504, [("content-type", "text/plain")], b"peer did not answer\n"
        finally:
            self._tasks.pop(task.id, None)

    def reply(self, task_id: str, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        """The outbound-only peer's answer to a task; False if unknown or already answered."""
        task = self._tasks.get(task_id)
        if task is None or task.done.done():
            return False
        kept = [(k, v) for k, v in headers if k in FORWARD_RESPONSE]
        task.done.set_result((status, kept, body))
        self.relayed_bytes += len(body)
        return True


class RelayWorker:
    """The outbound-only side: long-polls a relay and answers its tasks with ``handler``."""

    def __init__(
        self,
        relay: str,
        identity: PeerIdentity,
        handler: Handler,
        client: httpx.AsyncClient,
        *,
        max_body: int = 32 << 20,
        handler_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.relay = relay.rstrip("/")
        self.identity = identity
        self.handler = handler
        self.client = client
        self.max_body = max_body
        #: A task the app does not answer in time gets a 504: the worker must poll on.
        self.handler_timeout = handler_timeout
        self.clock = clock
        self.served = 0
        self.served_bytes = 0
        self.polls = 0
        #: When the relay last answered a poll (None: never), and the last errors.
        self.last_answer: float | None = None
        self.errors: list[str] = []

    def state(self) -> dict[str, Any]:
        """What the worker knows of its session (for diagnostics: status files, logs)."""
        return {
            "relay": self.relay,
            "polls": self.polls,
            "served": self.served,
            "served_bytes": self.served_bytes,
            "since_answer": None
            if self.last_answer is None
            else round(self.clock() - self.last_answer, 1),
            "errors": self.errors[-4:],
        }

    async def once(self, poll_timeout: float = 30.0) -> bool:
        """One poll; serve the task if one came. True if a task was served."""
        headers = {
            PEER_HEADER: self.identity.peer_id,
            AUTH_HEADER: poll_auth(self.identity, self.clock()),
        }
        self.polls += 1
        try:
            response = await self.client.get(
                f"{self.relay}{RELAY_PREFIX}/poll", headers=headers, timeout=poll_timeout + 10
            )
        except httpx.HTTPError as exc:
            raise DiscoveryError(f"relay poll: {type(exc).__name__}") from exc
        self.last_answer = self.clock()
        if response.status_code == 204:
            return False
        if response.status_code != 200:
            raise DiscoveryError(f"relay poll: HTTP {response.status_code}")
        try:
            task = json.loads(response.content)
            task_id, path, fwd = str(task["id"]), str(task["path"]), dict(task["headers"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DiscoveryError("relay sent a malformed task") from exc
        try:
            status, out_headers, body = await asyncio.wait_for(
                self.handler(path, fwd), self.handler_timeout
            )
        except TimeoutError:  # a hung app must not stop the polling
            status, out_headers, body = 504, [], b""
        except Exception:  # the app failed: answer, or the requester waits for nothing
            status, out_headers, body = 500, [], b""
        if len(body) > self.max_body:
            status, out_headers, body = 502, [], b""
        reply_headers = {f"x-relay-{k}": v for k, v in out_headers if k in FORWARD_RESPONSE}
        reply_headers["x-relay-status"] = str(status)
        try:
            await self.client.post(
                f"{self.relay}{RELAY_PREFIX}/reply/{task_id}", content=body, headers=reply_headers
            )
        except httpx.HTTPError as exc:
            raise DiscoveryError(f"relay reply: {type(exc).__name__}") from exc
        self.served += 1
        self.served_bytes += len(body)
        return True

    async def run(
        self, stop: asyncio.Event, *, poll_timeout: float = 30.0, max_polls: int = 1_000_000
    ) -> None:
        """Poll until ``stop`` is set; back off (bounded) after errors."""
        delay = 0.1
        for _ in range(max_polls):
            if stop.is_set():
                return
            poll = asyncio.ensure_future(self.once(poll_timeout))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if poll not in done:
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
                return
            stopper.cancel()
            exc = poll.exception()
            if exc is None:
                delay = 0.1
                continue
            self.errors = [*self.errors[-7:], f"{type(exc).__name__}: {exc}"]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def asgi_handler(app: Any, max_body: int = 32 << 20) -> Handler:
    """Serve relay tasks by calling an ASGI app in-process (the peer's own server app)."""

    async def handle(
        path: str, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/" + path.lstrip("/"),
            "raw_path": ("/" + path.lstrip("/")).encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
        }
        status = 500
        out: list[tuple[str, str]] = []
        parts: list[bytes] = []
        size = 0

        finished = asyncio.Event()
        requested = False

        async def receive() -> dict[str, Any]:
            # The request body once; then, like a server, "disconnect" only after the
            # response is complete (apps listen for it while streaming).
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out, size
            if message["type"] == "http.response.start":
                status = message["status"]
                out = [(k.decode().lower(), v.decode()) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                size += len(body)
                if size > max_body:
                    raise DiscoveryError("relayed answer too large")
                parts.append(body)
                if not message.get("more_body", False):
                    finished.set()

        try:
            await app(scope, receive, send)
        finally:
            finished.set()
        return status, out, b"".join(parts)

    return handle
