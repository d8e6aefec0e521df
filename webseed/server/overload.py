"""Refusing cheaply: the over-capacity fast path of the ASGI app.

When every upload slot is taken and the wait queue is full, a new artifact
request can only get ``503``. Finding that out the normal way (routing,
planning the answer from the repository, verifying a ``Webseed-Peer``
signature, the slot queue) costs about as much CPU as serving a 64 KiB range,
so a peer flooded by clients would spend its single event loop refusing them
and starve the clients it does serve. :class:`OverloadGate` sits in front of
all that and, while the pool is saturated, answers such requests with a
pre-built ``503`` + ``Retry-After``.

Cheap is not enough: most of a refusal's cost is the HTTP server's own
per-request work (parsing, the ASGI round trip), and a client that ignores
``Retry-After`` asks again at once on the same connection. So a connection
that asks again within half the ``Retry-After`` it was given has its next
refusal *held* for ``hold`` seconds (default: the pool's ``max_wait``, the time
a queued request may wait before its own ``503``) on a timer, costing no CPU
and no slot, before it is sent; a client that disconnects meanwhile is
dropped. A hammering connection thus gets at most one refusal per ``hold``,
and the event loop stays free for the requests being served, while a client
that honours ``Retry-After`` gets its ``503`` at once. (``Connection: close``
on the ``503`` was measured too: the reconnects cost the server more than
the keep-alive requests they replace, so the connection is kept.)

Only requests that would take a slot and would be refused anyway are
short-cut:

* ``GET`` of an artifact or a chunk (``HEAD``, ``POST``, metadata, manifests,
  metrics, stats, pex and exports never take a slot: they go the normal way);
* no ``If-None-Match`` (that may be a ``304``, which needs no slot);
* the queue order must not let the newcomer in: with the FIFO policy nobody
  overtakes; with a ranking policy (incentives) a request carrying a
  ``Webseed-Peer`` header goes the normal way (a verified contributor may
  outrank a waiter), and an anonymous one is ranked here, once, and refused
  only if it does not outrank the lowest waiter (an optimistic stranger is let
  through, carrying its rank in the scope so it is not ranked twice).

Refusals are still counted: ``webseed_http_requests_total{status="503"}``,
``webseed_over_capacity_total``, the range counter, the access log and the
``refused`` figure of the stats endpoint.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from webseed.server.capacity import FifoPolicy, Requester
from webseed.server.metrics import ACCESS_LOG

if TYPE_CHECKING:
    from webseed.server.core import Peer

#: Scope key carrying the rank the gate gave an anonymous request it let through.
RANK_KEY = "webseed.rank"
#: Scope key the app sets when it refused a request for capacity (queue full, wait over).
REFUSED_KEY = "webseed.refused"
_WK = "/.well-known/"
_CHUNKS = "/.well-known/webseed/chunks/"
#: Most connections whose last refusal is remembered (a few hundred bytes each).
MAX_TRACKED = 8192
_BODY = b"over upload capacity, retry later\n"
_AUTH = b"webseed-peer"
_INM = b"if-none-match"
_RANGE = b"range"


class OverloadGate:
    """ASGI middleware: the cheap ``503`` for artifact GETs while the slot pool is saturated."""

    def __init__(self, app: ASGIApp, peer: Peer, hold: float | None = None) -> None:
        self.app = app
        self.peer = peer
        self.pool = peer.pool
        #: Seconds a refused request is held before its 503 (default: the pool's max_wait).
        self.hold = self.pool.max_wait if hold is None else hold
        self._fifo = isinstance(self.pool.policy, FifoPolicy)
        self._last: dict[tuple[str, int], float] = {}  # connection -> its last refusal
        self._headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(_BODY)).encode()),
        ]
        self._body = {"type": "http.response.body", "body": _BODY, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.pool.saturated and scope["method"] == "GET":
            ranged = self._refusable(scope)
            if ranged is not None:
                await self.refuse(scope, receive, send, ranged)
                return
        await self.app(scope, receive, send)
        if scope.get(REFUSED_KEY):
            # Refused the normal way (queue full or wait over): a connection that asks
            # again at once is held like one refused here.
            client = scope.get("client")
            self._note((client[0], client[1]) if client else None, time.monotonic())

    def _refusable(self, scope: Scope) -> bool | None:
        """None if this request must go the normal way, else whether it has a Range header."""
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path.startswith(_WK) and not path.startswith(_CHUNKS):
            return None
        if path.endswith((".meta4", ".torrent")):
            return None
        ranged = signed = False
        for name, _ in scope["headers"]:
            if name == _RANGE:
                ranged = True
            elif name == _INM:
                return None
            elif name == _AUTH:
                signed = True
        if not self._fifo:
            if signed:
                return None
            client = scope.get("client") or ("", 0)
            rank = self.pool.policy.rank(Requester("", client[0], path.lstrip("/")))
            if not self.pool.refuses(rank):
                scope[RANK_KEY] = rank
                return None
        return ranged

    def _early(self, key: tuple[str, int] | None, now: float) -> bool:
        """Whether connection ``key`` got a refusal less than half its ``Retry-After`` ago."""
        last = self._last.get(key) if key else None
        return last is not None and now - last < self.pool.retry_after / 2

    def _note(self, key: tuple[str, int] | None, now: float) -> None:
        """Remember when connection ``key`` got its refusal (bounded table)."""
        if not key:
            return
        self._last[key] = now
        if len(self._last) > MAX_TRACKED:
            # Keep only the connections refused within the last Retry-After.
            window = self.pool.retry_after
            self._last = {k: t for k, t in self._last.items() if now - t < window}
            if len(self._last) > MAX_TRACKED:
                self._last = {key: now}

    async def refuse(self, scope: Scope, receive: Receive, send: Send, ranged: bool) -> None:
        """Send the pre-built ``503`` (held first if this connection ignores Retry-After)."""
        started = time.monotonic()
        client = scope.get("client")
        key = (client[0], client[1]) if client else None
        early = self.hold > 0 and self._early(key, started)
        if early and await _left_during(receive, self.hold):
            # The client gave up while held: nothing to send; it was refused all the same.
            self._count(scope, ranged, started, 0, early)
            return
        headers = [*self._headers, (b"retry-after", self.pool.retry_after_now())]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send(self._body)
        self._note(key, time.monotonic())  # from when it was sent, so a hold is no excuse
        self._count(scope, ranged, started, len(_BODY), early)

    def _count(self, scope: Scope, ranged: bool, started: float, sent: int, early: bool) -> None:
        self.peer.stats.request(refused=True)
        self.peer.metrics.refused(ranged=ranged)
        if ACCESS_LOG.isEnabledFor(logging.INFO):
            path = scope.get("path", "")
            client = scope.get("client") or ("", 0)
            ACCESS_LOG.info(
                "GET %s 503",
                path,
                extra={
                    "http": {
                        "method": "GET",
                        "path": path,
                        "status": 503,
                        "bytes": sent,
                        "range": ranged,
                        "client": client[0],
                        "duration_ms": round((time.monotonic() - started) * 1000, 3),
                        "fast_path": True,
                        "held": early,
                    }
                },
            )


async def _left_during(receive: Receive, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as the client disconnects (a GET has no body to read)."""
    with anyio.move_on_after(seconds):
        while (await receive())["type"] != "http.disconnect":
            pass
        return True
    return False
