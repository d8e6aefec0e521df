"""The peer as WSGI middleware, for Flask, Django or any WSGI app.

    from webseed.wsgi import WebseedMiddleware
    app.wsgi_app = WebseedMiddleware(app.wsgi_app, "/srv/repo", prefix="/webseed")

Requests under ``prefix`` get exactly the answers of the ASGI app (same
:class:`~webseed.server.core.Peer` plans); everything else goes to the wrapped
app. With ``prefix=""`` the peer answers what it has and passes its 404s on.
WSGI has no waiting room: when every upload slot is taken the answer is an
immediate ``503`` with ``Retry-After``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from webseed.server.capacity import RateLimiter, Requester, SlotPool, UploadPolicy
from webseed.server.core import Peer, Plan
from webseed.server.incentives import MAX_RECEIPTS_BODY, PeerIncentives, wsgi_target
from webseed.server.metrics import WsgiCount
from webseed.server.pex import PexSource
from webseed.server.ranges import DEFAULT_POLICY, RangePolicy
from webseed.server.repo import Repository

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class _Body:
    """The response body: file slices read in large blocks; frees the slot on close()."""

    def __init__(self, peer: Peer, plan: Plan, requester: Requester) -> None:
        self.peer, self.plan, self.requester = peer, plan, requester
        self.sent = 0
        self._closed = False
        assert plan.file is not None
        self.fd = os.open(plan.file, os.O_RDONLY)

    def __iter__(self) -> Iterator[bytes]:
        block = self.peer.read_size
        for part in self.plan.parts:
            if part.prefix:
                yield part.prefix
            offset, left = part.offset, part.length
            while left:
                n = min(block, left)
                self.peer.limiter.take_blocking(n)
                data = os.pread(self.fd, n, offset)
                if not data:
                    raise OSError(f"{self.plan.file} shrank while it was served")
                offset += len(data)
                left -= len(data)
                self.sent += len(data)
                yield data
        if self.plan.trailer:
            yield self.plan.trailer

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self.fd)
        self.peer.pool.release()
        if self.sent and self.plan.upload:
            self.peer.stats.served(self.plan.upload, self.requester.peer, self.sent)
            self.peer.pool.policy.served(self.requester, self.sent)
            if self.peer.incentives is not None:
                self.peer.incentives.served(self.requester, self.sent)
                self.peer.incentives.tick()  # seeding time; saves when due


class WebseedMiddleware:
    """Serve a webseed repository under ``prefix`` inside another WSGI application."""

    def __init__(
        self,
        app: WSGIApp,
        repo: str | os.PathLike[str] | Repository,
        *,
        prefix: str = "/webseed",
        store: str | os.PathLike[str] | None = None,
        slots: int = 0,
        rate: int = 0,
        policy: UploadPolicy | None = None,
        pex: PexSource | None = None,
        range_policy: RangePolicy = DEFAULT_POLICY,
        incentives: PeerIncentives | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")
        repository = repo if isinstance(repo, Repository) else Repository(repo, store)
        if incentives is not None:
            policy = policy or incentives.upload_policy()
            incentives.offered = lambda: repository.targets().keys()
        self.peer = Peer(
            repository,
            pool=SlotPool(slots, policy=policy, max_wait=0),
            limiter=RateLimiter(rate),
            pex=pex,
            range_policy=range_policy,
            incentives=incentives,
        )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        count = WsgiCount(self.peer.metrics, environ, start_response)
        result = self._answer(environ, count.start_response, start_response)
        # Answers of the wrapped app (no status seen by the counter) are not the peer's.
        return count.wrap(result) if count.status else result

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        app_start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        raw = environ.get("PATH_INFO", "")
        if self.prefix:
            if raw != self.prefix and not raw.startswith(self.prefix + "/"):
                return self.app(environ, app_start_response)
            raw = raw[len(self.prefix) :]
        try:
            # PEP 3333: PATH_INFO carries the URL's bytes as latin-1; paths are UTF-8.
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return self._finish(start_response, _bad_path())
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        method = environ.get("REQUEST_METHOD", "GET").upper()
        target = wsgi_target(environ)
        if method == "POST" and self.peer.is_post_target(path):
            who = self.peer.requester(headers, _client(environ), path, method=method, target=target)
            return self._finish(start_response, self.peer.post(path, _read_body(environ), who))
        base = "{}://{}{}{}".format(
            environ.get("wsgi.url_scheme", "http"),
            environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""),
            environ.get("SCRIPT_NAME", ""),
            self.prefix,
        )
        plan = self.peer.plan(method, path or "/", headers, base)
        if not self.prefix and plan.status == 404:
            return self.app(environ, app_start_response)
        if plan.upload is None or plan.head:
            return self._finish(start_response, plan)
        peer = self.peer
        if not peer.pool.try_acquire():
            peer.stats.request(refused=True)
            start_response(
                _status(503),
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Retry-After", str(peer.pool.retry_after)),
                    ("Content-Length", "34"),
                ],
            )
            return [b"over upload capacity, retry later\n"]
        peer.stats.request()
        who = peer.requester(headers, _client(environ), plan.upload, method=method, target=target)
        try:
            body = _Body(peer, plan, who)
        except OSError:
            peer.pool.release()
            return self._finish(start_response, Plan(404, [("content-length", "0")]))
        start_response(_status(plan.status), plan.headers)
        return body

    @staticmethod
    def _finish(start_response: Callable[..., Any], plan: Plan) -> Iterable[bytes]:
        start_response(_status(plan.status), plan.headers)
        return [b"" if plan.head else plan.body]


def _client(environ: dict[str, Any]) -> str:
    return str(environ.get("REMOTE_ADDR", ""))


def _read_body(environ: dict[str, Any], limit: int = MAX_RECEIPTS_BODY) -> bytes | None:
    """The request body, or ``None`` if it is (declared or found) larger than ``limit``."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if not declared.isdigit():
        return b""  # PEP 3333: without CONTENT_LENGTH there is no body to read
    if int(declared) > limit:
        return None
    data = environ["wsgi.input"].read(int(declared))
    return bytes(data) if len(data) <= limit else None


def _bad_path() -> Plan:
    body = b"bad path: not UTF-8\n"
    return Plan(
        400,
        [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))],
        body,
    )
