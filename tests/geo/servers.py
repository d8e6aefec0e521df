"""Real mirrors for the tests: Starlette apps under Hypercorn on 127.x.y.z ephemeral ports.

Each :class:`MirrorServer` runs its own event loop in a thread. Its ``mode``
chooses a misbehaviour: good, slow (rate limited in the app), flaky (every
other request 503), truncate, wrong (flipped bytes), html200, wrongsize
(Content-Range with a wrong total), hang (never answers), die (serves part of
the body, then the whole server shuts down), proxyonly (403 unless the request
came through a proxy, i.e. carries a ``Via`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

PATH = "releases/data.bin"
DATA = random.Random(20261124).randbytes(1024 * 1024)
_FLIP = bytes(range(255, -1, -1))  # every byte inverted


def free_refused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then closed): connecting is refused at once."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class MirrorServer:
    """One mirror: ``url`` is its repository root (ends with '/')."""

    def __init__(
        self,
        mode: str = "good",
        host: str = "127.0.0.1",
        rate: float = 100_000.0,
        die_after: int = 256 * 1024,
        data: bytes = DATA,
        piece: int = 16 * 1024,
        sock: socket.socket | None = None,
    ) -> None:
        self.mode = mode
        self.piece = piece
        self.rate = rate
        self.die_after = die_after
        self.data = data
        self.requests = 0
        self.first_body_sent: list[float] = []  # perf_counter() of each response's first piece
        self.bytes_sent = 0
        self.host = host
        if sock is None:
            sock = socket.socket()
            sock.bind((host, 0))
            sock.listen(128)
        self._sock = sock
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}/"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("mirror server did not start")

    # ---------------------------------------------------------------- app

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle)])

    async def _handle(self, request: Request) -> Response:
        self.requests += 1
        mode = self.mode
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "flaky" and self.requests % 2 == 1:
            return Response(b"busy", status_code=503)
        if mode == "html200":
            return Response(
                b"<!DOCTYPE html><html><body>Mirror error</body></html>", media_type="text/html"
            )
        if mode == "proxyonly" and "via" not in request.headers:
            return Response(b"forbidden", status_code=403)
        if request.url.path.lstrip("/") != PATH:
            return Response(b"not found", status_code=404)
        size = len(self.data)
        start, end = 0, size - 1
        rng = request.headers.get("range")
        if rng:
            a, b = rng.removeprefix("bytes=").split("-")
            start, end = int(a), min(int(b), size - 1)
        body = self.data[start : end + 1]
        if mode == "wrong":
            body = body.translate(_FLIP)
        total = size + 1000 if mode == "wrongsize" else size
        headers = {
            "Content-Range": f"bytes {start}-{end}/{total}",
            "Content-Length": str(len(body)),
            "Accept-Ranges": "bytes",
        }
        return StreamingResponse(
            self._body(body),
            status_code=206 if rng else 200,
            headers=headers,
            media_type="application/octet-stream",
        )

    async def _body(self, body: bytes) -> AsyncIterator[bytes]:
        step = self.piece
        sent = 0
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            if self.mode == "truncate" and sent + len(piece) > len(body) // 2:
                raise ConnectionAbortedError("truncating on purpose")
            if self.mode == "die" and sent >= self.die_after:
                self.stop_soon()
                await asyncio.sleep(3600)  # cancelled by the shutdown
            if sent == 0:
                self.first_body_sent.append(time.perf_counter())
            sent += len(piece)
            self.bytes_sent += len(piece)
            yield piece
            if self.mode == "slow":  # pace after each piece: the first byte is prompt
                await asyncio.sleep(len(piece) / self.rate)

    # ---------------------------------------------------------------- lifecycle

    def _run(self) -> None:
        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.graceful_timeout = 0.1
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "CRITICAL"

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            # Connections cut by a deliberate shutdown are expected here, not news.
            self._loop.set_exception_handler(lambda _loop, _ctx: None)
            self._stop = asyncio.Event()
            self._ready.set()
            await serve(self._app(), config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        with contextlib.suppress(Exception):
            asyncio.run(main())

    def stop_soon(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # already stopped: loop closed
                self._loop.call_soon_threadsafe(self._stop.set)

    def stop(self) -> None:
        self.stop_soon()
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()
