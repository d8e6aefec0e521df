"""The peer as an ASGI application (Starlette), mountable under any prefix.

    from webseed.asgi import create_app
    app = create_app("/srv/repo")                      # serve it with any ASGI server
    parent.mount("/mirror", create_app("/srv/repo"))   # or inside a Starlette/FastAPI app

The hot path reads the file in large blocks (1 MiB by default) in a worker
thread and hands each block to the server as one body message; there is no
per-16-KiB Python work. Starlette's ``FileResponse`` is not used for artifacts:
it reads 64 KiB per await and parses ``Range`` itself, while the peer applies
its own range policy (:mod:`webseed.server.ranges`), refuses unverified chunks
of partial artifacts, takes an upload slot and counts bytes per peer.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webseed.server.capacity import OverCapacity, RateLimiter, Requester, SlotPool, UploadPolicy
from webseed.server.core import READ_SIZE, Peer, Plan
from webseed.server.exports import export_target
from webseed.server.incentives import PeerIncentives, lifespan, read_body, request_target
from webseed.server.metrics import MetricsMiddleware
from webseed.server.overload import RANK_KEY, REFUSED_KEY, OverloadGate
from webseed.server.pex import PexSource
from webseed.server.ranges import DEFAULT_POLICY, RangePolicy
from webseed.server.repo import Repository


class PlanResponse(Response):
    """Carries out a :class:`Plan` over ASGI: headers, then file slices in large reads."""

    def __init__(
        self, peer: Peer, plan: Plan, requester: Requester, rank: float | None = None
    ) -> None:
        self.peer = peer
        self.rank = rank  # the queue rank the overload gate already gave (anonymous only)
        self.plan = plan
        self.requester = requester
        self.status_code = plan.status
        self.background = None
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in plan.headers]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.plan
        if plan.upload is None or plan.head:
            await self._start(send, self.raw_headers)
            await send({"type": "http.response.body", "body": b"" if plan.head else plan.body})
            return
        peer = self.peer
        try:
            await peer.pool.acquire(self.requester, self.rank)
        except OverCapacity as exc:
            scope[REFUSED_KEY] = True  # the overload gate holds this connection's next refusal
            peer.stats.request(refused=True)
            await _overloaded(send, exc.retry_after)
            return
        peer.stats.request()
        sent = 0
        try:
            assert plan.file is not None
            try:
                fd = await anyio.to_thread.run_sync(os.open, plan.file, os.O_RDONLY)
            except OSError:
                await _plain(send, 404, b"not found\n")
                return
            try:
                await self._start(send, self.raw_headers)
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        # A client that goes away must not keep its slot while we read on.
                        while (await receive())["type"] != "http.disconnect":
                            pass
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch)
                    sent = await self._stream(fd, send)
                    tg.cancel_scope.cancel()
            finally:
                os.close(fd)
        finally:
            peer.pool.release()
            if sent:
                peer.stats.served(plan.upload, self.requester.peer, sent)
                peer.pool.policy.served(self.requester, sent)
                if peer.incentives is not None:
                    peer.incentives.served(self.requester, sent)

    async def _start(self, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})

    async def _stream(self, fd: int, send: Send) -> int:
        plan, peer = self.plan, self.peer
        block = peer.read_size
        sent = 0
        for part in plan.parts:
            if part.prefix:
                await send({"type": "http.response.body", "body": part.prefix, "more_body": True})
            offset, left = part.offset, part.length
            while left:
                n = min(block, left)
                await peer.limiter.take(n)
                data = await anyio.to_thread.run_sync(os.pread, fd, n, offset)
                if not data:
                    raise OSError(f"{plan.file} shrank while it was served")
                await send({"type": "http.response.body", "body": data, "more_body": True})
                offset += len(data)
                left -= len(data)
                sent += len(data)
        await send({"type": "http.response.body", "body": plan.trailer, "more_body": False})
        return sent


async def _plain(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _overloaded(send: Send, retry_after: int) -> None:
    await _plain(
        send,
        503,
        b"over upload capacity, retry later\n",
        ((b"retry-after", str(retry_after).encode()),),
    )


def create_app(
    repo: str | os.PathLike[str] | Repository,
    *,
    store: str | os.PathLike[str] | None = None,
    slots: int = 0,
    rate: int = 0,
    policy: UploadPolicy | None = None,
    max_wait: float = 1.0,
    pex: PexSource | None = None,
    range_policy: RangePolicy = DEFAULT_POLICY,
    read_size: int | None = None,
    incentives: PeerIncentives | None = None,
    refuse_hold: float | None = None,
) -> Starlette:
    """A Starlette app serving repository ``repo`` (and partial artifacts in ``store``).

    ``slots``: concurrent uploads (0 = unlimited); ``rate``: upload bytes/s for
    all uploads together (0 = unlimited); ``policy`` orders requests waiting up
    to ``max_wait`` seconds for a slot (default FIFO); ``pex`` supplies the
    peer-exchange announcements; ``incentives`` accounts uploads to verified
    identities, takes receipts and, unless ``policy`` is given, orders the
    queue by contribution (``docs/incentives.md``). While every slot is taken
    and the queue is full, artifact GETs that would be refused are refused
    before routing, held ``refuse_hold`` seconds first (default ``max_wait``;
    see :mod:`webseed.server.overload`). The :class:`Peer` is at
    ``app.state.peer``.
    """
    if incentives is not None and policy is None:
        policy = incentives.upload_policy()
    repository = repo if isinstance(repo, Repository) else Repository(Path(repo), store)
    peer = Peer(
        repository,
        pool=SlotPool(slots, policy=policy, max_wait=max_wait),
        limiter=RateLimiter(rate),
        pex=pex,
        range_policy=range_policy,
        read_size=read_size or READ_SIZE,
        incentives=incentives,
    )
    if incentives is not None:
        incentives.offered = lambda: repository.targets().keys()

    async def endpoint(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items()}
        path = "/" + request.path_params["path"]
        client = request.client.host if request.client else ""
        target = request_target(request.scope)
        if request.method == "POST" and peer.is_post_target(path):
            body = await read_body(request)
            who = peer.requester(headers, client, path, method="POST", target=target)
            plan = peer.post(path, body, who)
            return PlanResponse(peer, plan, who)
        if export_target(path) is not None:
            # Exports list the peer's own URL as this client reached it (mount prefix
            # included); a first .meta4 hashes the file once, so not on the event loop.
            base = (
                f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"
            )
            plan = await anyio.to_thread.run_sync(peer.plan, request.method, path, headers, base)
        else:
            plan = peer.plan(request.method, path, headers)
        who = peer.requester(
            headers, client, plan.upload or path, method=request.method, target=target
        )
        rank = request.scope.get(RANK_KEY) if not who.peer else None
        return PlanResponse(peer, plan, who, rank)

    app = Starlette(
        routes=[
            Route(
                "/{path:path}",
                endpoint,
                methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
            )
        ],
        # The gate first: a refusal while saturated skips routing, planning and auth.
        middleware=[
            Middleware(OverloadGate, peer=peer, hold=refuse_hold),
            Middleware(MetricsMiddleware, metrics=peer.metrics),
        ],
        lifespan=lifespan(incentives) if incentives is not None else None,
    )
    app.state.peer = peer
    return app
