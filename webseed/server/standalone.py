"""The standalone peer: Hypercorn serving the ASGI app over HTTP/1.1 and HTTP/2.

We bind the listening socket ourselves (so ``port=0`` yields a known free port)
and hand it to Hypercorn as ``fd://``. HTTP/2 is offered by ALPN over TLS and
by prior knowledge / ``h2c`` upgrade in clear text. SIGTERM and SIGINT start a
graceful shutdown: the socket stops accepting, running responses get
``graceful_timeout`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config


@dataclass
class ServerOptions:
    """Where and how to listen."""

    host: str = "127.0.0.1"
    port: int = 8470
    certfile: str | None = None
    keyfile: str | None = None
    graceful_timeout: float = 3.0
    keep_alive_timeout: float = 5.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, tls: bool) -> str:
    """The base URL a client uses to reach ``sock``."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def make_config(sock: socket.socket, opts: ServerOptions) -> Config:
    """Hypercorn's configuration for the peer, listening on the already bound ``sock``."""
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.certfile = opts.certfile
    config.keyfile = opts.keyfile
    config.graceful_timeout = opts.graceful_timeout
    config.keep_alive_timeout = opts.keep_alive_timeout
    config.accesslog = None
    config.include_server_header = False
    return config


async def serve(
    app: Any,
    opts: ServerOptions,
    *,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    mode: str | None = None,
) -> None:
    """Serve ``app`` until ``stop`` is set (or SIGTERM/SIGINT); call ``ready(url)`` once bound."""
    stop = stop or asyncio.Event()
    sock = bind_socket(opts.host, opts.port)
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop.set)
                    installed.append(sig)
        if ready is not None:
            ready(url_of(sock, opts.certfile is not None))
        await hypercorn_serve(
            app,
            make_config(sock, opts),
            shutdown_trigger=stop.wait,
            mode=mode,  # type: ignore[arg-type]
        )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        # Hypercorn closes the socket it built on our descriptor; close ours if it did not.
        with contextlib.suppress(OSError):
            sock.close()


class ServerThread:
    """Run ``app`` under Hypercorn in a background thread (tests, embedding).

    ``with ServerThread(app) as url: ...`` serves on a free loopback port.
    """

    def __init__(self, app: Any, opts: ServerOptions | None = None, mode: str | None = None):
        self.app = app
        self.opts = opts or ServerOptions(port=0)
        self.mode = mode
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="webseed-server")
        self._error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(url: str) -> None:
                self.url = url
                self._ready.set()

            await serve(
                self.app,
                self.opts,
                ready=ready,
                stop=self._stop,
                handle_signals=False,
                mode=self.mode,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    def start(self) -> str:
        """Start serving; return the base URL."""
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"server did not start: {self._error!r}")
        return self.url

    def stop(self) -> None:
        """Stop gracefully and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(app: Any, **kwargs: Any) -> Iterator[str]:
    """``with running(app) as url:`` — a :class:`ServerThread` as a context manager."""
    with ServerThread(app, ServerOptions(port=0, **kwargs)) as url:
        yield url
