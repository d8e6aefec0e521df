"""The discovery endpoints as an ASGI wrapper around any peer app.

``DiscoveryApp(exchange, inner=server_app, hub=RelayHub())`` answers

* ``POST /.well-known/webseed/pex`` — an exchange: verify and keep the
  caller's announcements, answer with ours plus a diverse sample;
* ``GET /.well-known/webseed/pex`` — publish only (same answer, nothing kept);
* with a ``hub``: ``GET .../relay/poll``, ``POST .../relay/reply/<task>`` and
  ``GET .../relay/<peer id>/<path>`` (see :mod:`.relay`);

and passes every other request to ``inner`` (404 without one). This is how
the discovery layer plugs into ``webseed.server`` without either importing
the other: the server's ``create_app(..., pex=store)`` publishes the same
store on ``GET``, and this wrapper adds the ``POST`` and relay routes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from webseed.errors import SignatureError

from .announce import address_group
from .client import PEX_PATH
from .errors import DiscoveryError
from .exchange import MAX_BODY, MAX_LIST, Exchange, encode_message
from .relay import AUTH_HEADER, RELAY_PREFIX, RelayHub

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body exceeded its cap."""


async def read_body(receive: Receive, cap: int) -> bytes:
    """The whole request body, raising :class:`BodyTooLarge` beyond ``cap`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    """A complete response."""
    hdrs = [(k.encode(), v.encode()) for k, v in headers or []]
    if not any(k == b"content-type" for k, _ in hdrs):
        hdrs.append((b"content-type", b"text/plain; charset=utf-8"))
    hdrs += [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def disconnected(receive: Receive, max_messages: int = 10_000) -> None:
    """Return once the client has gone (``http.disconnect``), reading what it sends."""
    for _ in range(max_messages):  # a GET sends one (empty) body message
        if (await receive())["type"] == "http.disconnect":
            return


def _json(send: Send, body: bytes) -> Awaitable[None]:
    return respond(send, 200, body, [("content-type", "application/json")])


class DiscoveryApp:
    """ASGI app: the pex and relay endpoints, everything else to ``inner``."""

    def __init__(
        self, exchange: Exchange, inner: ASGIApp | None = None, *, hub: RelayHub | None = None
    ) -> None:
        self.exchange = exchange
        self.inner = inner
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == PEX_PATH:
                return await self._pex(scope, receive, send)
            if self.hub is not None and path.startswith(RELAY_PREFIX + "/"):
                return await self._relay(scope, path[len(RELAY_PREFIX) + 1 :], receive, send)
        if self.inner is not None:
            return await self.inner(scope, receive, send)
        if scope["type"] == "http":
            await respond(send, 404, b"not found\n")

    async def _pex(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            store = self.exchange.store
            return await _json(send, encode_message(store.announcements(MAX_LIST)))
        if method != "POST":
            return await respond(send, 405, b"method not allowed\n", [("allow", "GET, POST")])
        try:
            body = await read_body(receive, MAX_BODY)
        except BodyTooLarge:
            return await respond(send, 413, b"pex message too large\n")
        client = scope.get("client") or ("", 0)
        source = address_group(f"http://{client[0]}") if client[0] else "unknown"
        _, answer = self.exchange.on_request(body, source)
        await _json(send, answer)

    async def _relay(self, scope: Scope, rest: str, receive: Receive, send: Send) -> None:
        assert self.hub is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if rest == "poll" and method == "GET":
            gone = asyncio.ensure_future(disconnected(receive))
            try:
                task = await self.hub.poll(
                    headers.get("webseed-peer", ""), headers.get(AUTH_HEADER, ""), gone=gone
                )
            except SignatureError as exc:
                return await respond(send, 403, f"{exc}\n".encode())
            except DiscoveryError as exc:
                return await respond(send, 503, f"{exc}\n".encode(), [("retry-after", "30")])
            finally:
                gone.cancel()
            if task is None:
                return await respond(send, 204, b"")
            return await _json(send, json.dumps(task).encode())
        if rest.startswith("reply/") and method == "POST":
            try:
                body = await read_body(receive, self.hub.max_body)
            except BodyTooLarge:
                return await respond(send, 413, b"too large\n")
            status_text = headers.get("x-relay-status", "")
            status = int(status_text) if status_text.isdigit() and len(status_text) == 3 else 502
            fwd = [
                (k[len("x-relay-") :], v) for k, v in headers.items() if k.startswith("x-relay-")
            ]
            ok = self.hub.reply(rest[len("reply/") :], status, fwd, body)
            return await respond(send, 204 if ok else 404, b"")
        peer_id, _, subpath = rest.partition("/")
        if method not in ("GET", "HEAD") or not subpath:
            return await respond(send, 404, b"not found\n")
        status, out, body = await self.hub.request(peer_id, subpath, headers)
        await respond(send, status, b"" if method == "HEAD" else body, out)
