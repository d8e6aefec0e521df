"""Real HTTP sources on 127.0.0.1 for the engine tests.

``RangeApp`` is a small ASGI app (run by a real Hypercorn) serving one
directory with single byte ranges, plus misbehaviours a test can switch on:
corrupt bytes, stalling, dying mid-transfer, holding only some chunks (with a
bitfield at ``/.well-known/webseed/bitfield/<digest>``), a rate limit.
``Nginx`` runs the real nginx as a plain mirror (no bitfield, no webseed code).
:func:`webseed_serve` runs the real ``webseed serve`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
PIECE = 64 * 1024


@dataclass
class Behaviour:
    """What a source does wrong (all off: an honest complete source)."""

    corrupt_chunks: set[int] | None = None  # flip a byte in these chunks (None: none)
    corrupt_all: bool = False
    stall_after: int | None = None  # total body bytes, then hang forever
    die_after: int | None = None  # total body bytes, then drop the connection
    holds: set[int] | None = None  # chunks held (None: all); others 416
    bitfield: bool = True  # serve a bitfield (when ``holds`` is set)
    rate: float | None = None  # bytes/s per response
    chunk_size: int = 0
    digest: str = ""
    sent: int = 0
    requests: list[str] = field(default_factory=list)


class RangeApp:
    """ASGI app serving ``root`` with Range support and the chosen ``behaviour``."""

    def __init__(self, root: Path, behaviour: Behaviour) -> None:
        self.root = root
        self.b = behaviour

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"].lstrip("/")
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.b.requests.append(f"{path} {headers.get('range', '')}")
        if path.startswith(".well-known/webseed/bitfield/"):
            await self._bitfield(path.rsplit("/", 1)[1], send)
            return
        file = self.root / path
        if not file.is_file():
            await _plain(send, 404, b"not found")
            return
        size = file.stat().st_size
        start, end, status = 0, size, 200
        rng = headers.get("range")
        if rng:
            m = _RANGE.match(rng)
            if m is None or int(m[1]) >= size:
                await _plain(send, 416, b"bad range", [(b"content-range", f"bytes */{size}")])
                return
            start = int(m[1])
            end = min(size, int(m[2]) + 1) if m[2] else size
            status = 206
        if self.b.holds is not None and self.b.chunk_size:
            first, last = start // self.b.chunk_size, (end - 1) // self.b.chunk_size
            if not all(c in self.b.holds for c in range(first, last + 1)):
                await _plain(send, 416, b"not held", [(b"content-range", f"bytes */{size}")])
                return
        head = [(b"content-length", str(end - start).encode()), (b"accept-ranges", b"bytes")]
        if status == 206:
            head.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        with open(file, "rb") as f:
            pos = start
            t0 = time.monotonic()
            while pos < end:
                n = min(PIECE, end - pos)
                if self.b.stall_after is not None and self.b.sent + n > self.b.stall_after:
                    await asyncio.sleep(3600)
                if self.b.die_after is not None and self.b.sent + n > self.b.die_after:
                    raise ConnectionError("source dies mid-transfer (test)")
                f.seek(pos)
                data = bytearray(f.read(n))
                self._corrupt(data, pos)
                await send({"type": "http.response.body", "body": bytes(data), "more_body": True})
                pos += n
                self.b.sent += n
                if self.b.rate:
                    ahead = (pos - start) / self.b.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _corrupt(self, data: bytearray, pos: int) -> None:
        cs = self.b.chunk_size
        if not cs or not (self.b.corrupt_all or self.b.corrupt_chunks):
            return
        for i in range(len(data)):
            off = pos + i
            if off % cs == 100:  # byte 100 of every chunk
                chunk = off // cs
                if self.b.corrupt_all or (self.b.corrupt_chunks and chunk in self.b.corrupt_chunks):
                    data[i] ^= 0xFF

    async def _bitfield(self, digest: str, send: Any) -> None:
        if self.b.holds is None or not self.b.bitfield or digest != self.b.digest:
            await _plain(send, 404, b"no bitfield")
            return
        n = max(self.b.holds) + 1 if self.b.holds else 0
        bits = bytearray((n + 7) // 8)
        for c in self.b.holds:
            bits[c >> 3] |= 0x80 >> (c & 7)
        await _plain(send, 200, bytes(bits))


async def _plain(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, str]] | None = None
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    headers += [(k, v.encode()) for k, v in extra or []]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wait_port(port: int, limit: float = 5.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


class Server:
    """Hypercorn serving an ASGI app on 127.0.0.1 (ephemeral port) in a thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.set_inheritable(True)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            cfg = Config()
            # Hypercorn closes the socket it is given: give it a duplicate of ours.
            cfg.bind = [f"fd://{os.dup(self._sock.fileno())}"]
            cfg.loglevel = "WARNING"
            cfg.accesslog = None
            cfg.errorlog = None
            cfg.graceful_timeout = 0.1
            self._ready.set()
            await serve(self.app, cfg, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        with contextlib.suppress(Exception):
            asyncio.run(main())

    def __enter__(self) -> Server:
        self._thread.start()
        self._ready.wait(5)
        # Hypercorn accepts on the inherited socket once serving: wait until it answers.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        self._sock.close()


def source(root: Path, **kw: Any) -> tuple[Server, Behaviour]:
    """A Hypercorn range server over ``root`` with a :class:`Behaviour`."""
    b = Behaviour(**kw)
    return Server(RangeApp(root, b)), b


@contextlib.contextmanager
def webseed_serve(repo: Path, *args: str) -> Iterator[str]:
    """A ``webseed serve`` process on an ephemeral port; yields the URL it prints.

    Its stderr goes to a file (a pipe nobody reads could fill up and stall a chatty
    peer); it is shown if the process does not start. Stopped by PID.
    """
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webseed.cli", "serve", str(repo), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            m = re.search(r"(https?://\S+)", proc.stdout.readline())
            if m is None:
                err.seek(0)
            assert m, err.read()
            yield m.group(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
