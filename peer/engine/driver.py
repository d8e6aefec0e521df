"""The asyncio engine: runs the sans-I/O scheduler against real HTTP sources.

One task per request (``fetch``), one per peer bitfield; every task reports to
a queue, and a single loop feeds the queue to the scheduler, timestamps each
event, ticks it every ``tick`` seconds and carries out its actions. Verified
chunks go through :class:`webseed.storage.PartialArtifact`, whose journal makes
``kill -9`` at any moment safe: a re-run resumes from the verified chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from peer.engine.budget import DEFAULT_BUDGET, ByteBudget
from peer.engine.fetch import fetch
from peer.engine.more_sources import SourceFinder, SourceNeed
from peer.engine.report import DownloadReport, SourceReport
from peer.engine.sources import SourceSpec
from peer.scheduler import (
    Action,
    Ban,
    BytesReceived,
    Cancel,
    ChunkCorrupt,
    ChunkVerified,
    Event,
    FallBackToMirrors,
    Finished,
    HaveBitfield,
    NeedMoreSources,
    Request,
    RequestFailed,
    Scheduler,
    SchedulerConfig,
    SourceAdded,
    Tick,
)
from webseed.errors import IntegrityError, WebseedError
from webseed.manifest import Manifest
from webseed.storage import PartialArtifact

#: Called after each verified chunk with (verified chunks, chunk count, verified bytes).
Progress = Callable[[int, int, int], None]

#: Chunks up to this size are verified and stored on the event loop; larger ones in a thread.
INLINE_WRITE = 1024 * 1024

#: Bitfields larger than this are refused (a 20 GB artifact at 256 KiB chunks needs 10 KB).
MAX_BITFIELD = 1 << 20


class SwarmError(WebseedError):
    """The download cannot finish: no source can (or will) serve the missing chunks."""


def default_client(**kwargs: object) -> httpx.AsyncClient:
    """An httpx client as the engine wants it: HTTP/2 where offered, proxies from the
    environment, pooled keep-alive connections, no overall read deadline (the
    scheduler detects stalls itself; the read timeout is only a backstop)."""
    opts: dict[str, object] = {
        "http2": True,
        "trust_env": True,
        "follow_redirects": True,
        "timeout": httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=None),
        "limits": httpx.Limits(max_connections=64, max_keepalive_connections=32),
    }
    opts.update(kwargs)
    return httpx.AsyncClient(**opts)  # type: ignore[arg-type]


class Engine:
    """Download one artifact described by ``manifest`` from ``sources`` into ``data_path``.

    Chunk buffers in flight are capped at ``buffer_bytes`` (one chunk is always
    allowed), so memory does not grow with the artifact. ``fallback`` mirrors are
    held back and added only when the scheduler asks (``FallBackToMirrors``).
    ``give_up_after``: seconds without a byte or a newly verified chunk before giving up.
    ``finder`` (e.g. :class:`~peer.engine.more_sources.PexFinder`) is asked for new
    sources once at the start and on every ``NeedMoreSources``; ``auth`` (e.g. the
    peer identity's :class:`~peer.incentives.client.PeerAuth`) signs the requests of
    the client the engine makes when none is given.
    Use :meth:`run` (or :func:`download`).
    """

    def __init__(
        self,
        manifest: Manifest,
        sources: Sequence[SourceSpec],
        data_path: str | Path,
        *,
        fallback: Sequence[SourceSpec] = (),
        client: httpx.AsyncClient | None = None,
        seed: int | None = None,
        config: SchedulerConfig | None = None,
        tick: float = 0.1,
        give_up_after: float = 30.0,
        on_progress: Progress | None = None,
        buffer_bytes: int = DEFAULT_BUDGET,
        finder: SourceFinder | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        self.manifest = manifest
        self._budget_bytes = buffer_bytes
        self.sources = _dedup(sources)
        self.fallback = [s for s in _dedup(fallback) if s.base not in {x.base for x in sources}]
        self.data_path = Path(data_path)
        self._client = client
        self.seed = seed if seed is not None else time.monotonic_ns()
        self.config = config
        self.tick = tick
        self.give_up_after = give_up_after
        self.on_progress = on_progress
        self._queue: asyncio.Queue[tuple[Event, float]] = asyncio.Queue()
        self._tasks: dict[int, asyncio.Task[int]] = {}
        self._side: set[asyncio.Task[None]] = set()
        self._specs: dict[str, SourceSpec] = {}
        self._req_source: dict[int, str] = {}
        self._whole: set[str] = set()  # sources streaming a whole file (no Range support)
        self._reports: dict[str, SourceReport] = {}
        self._lock = threading.Lock()
        self._corrupt = 0
        self.finder = finder
        self.auth = auth
        self._finding: asyncio.Task[None] | None = None

    # -- public ---------------------------------------------------------------------------

    async def run(self, dest: str | Path) -> DownloadReport:
        """Download, verify every chunk, move the file to ``dest``; return the report."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        m = self.manifest
        self._budget = ByteBudget(self._budget_bytes)
        store = PartialArtifact(self.data_path, m)
        self._store = store
        report = DownloadReport(path=m.path, size=m.size, output=str(dest))
        report.resumed_chunks = store.verified_count
        own_client = self._client is None
        client = self._client or default_client(**({"auth": self.auth} if self.auth else {}))
        try:
            if not store.complete:
                await self._download(client, store)
            report.elapsed = loop.time() - t0
            report.phases["transfer"] = report.elapsed
            store.finalize(dest)
            report.phases["finalize"] = loop.time() - t0 - report.elapsed
        finally:
            for task in [*self._tasks.values(), *self._side]:
                task.cancel()
            await asyncio.gather(*self._tasks.values(), *self._side, return_exceptions=True)
            if not store.complete:
                with contextlib.suppress(OSError):
                    store.sync()
            store.close()
            if own_client:
                await client.aclose()
        report.corrupt_chunks = self._corrupt
        report.sources = list(self._reports.values())
        report.fetched_bytes = sum(s.bytes for s in report.sources)
        return report

    # -- the loop ---------------------------------------------------------------------------

    async def _download(self, client: httpx.AsyncClient, store: PartialArtifact) -> None:
        loop = asyncio.get_running_loop()
        m = self.manifest
        sched = Scheduler(
            size=m.size,
            chunk_size=m.chunk_size,
            seed=self.seed,
            verified=[i for i in range(m.chunk_count) if store.has(i)],
            config=self.config,
        )
        self._sched = sched
        for spec in self.sources:
            self._add_source(client, spec, sched, loop.time())
        self._find_more(client, sched, "start", 0)
        last_progress = loop.time()
        next_tick = loop.time() + self.tick
        verified_seen = sched.chunk_count - sched.missing
        while True:
            timeout = max(0.0, next_tick - loop.time())
            try:
                event, at = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                event, at = Tick(), loop.time()
            batch = [(event, at)]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            now = loop.time()
            if now >= next_tick and not isinstance(event, Tick):
                batch.append((Tick(), now))
            if now >= next_tick:
                next_tick = now + self.tick
            for ev, t in batch:
                if isinstance(ev, ChunkCorrupt):
                    self._corrupt += 1
                elif isinstance(ev, RequestFailed) and ev.request in self._req_source:
                    self._reports[self._req_source[ev.request]].last_error = ev.reason
                elif isinstance(ev, BytesReceived) and ev.n > 0:
                    # Bytes still flowing is progress too (a slow source, a big chunk).
                    last_progress = now
                actions = sched.handle(ev, t)
                if self._act(client, store, sched, actions, loop.time()):
                    return
            done_now = sched.chunk_count - sched.missing
            if done_now != verified_seen:
                verified_seen = done_now
                last_progress = now
            elif now - last_progress > self.give_up_after:
                why = f"no progress for {self.give_up_after:g} s"
                raise SwarmError(self._why_stuck(sched, why))
            if sched.stuck and not self._side:
                if self.fallback:
                    self._add_fallback(client, sched, now)
                    continue
                if self.finder is not None and not self.finder.exhausted:
                    continue  # the scheduler repeats NeedMoreSources: ask again then
                raise SwarmError(self._why_stuck(sched, "no source holds the missing chunks"))

    def _why_stuck(self, sched: Scheduler, what: str) -> str:
        banned = [f"{s.source} ({s.banned})" for s in sched.stats() if s.banned]
        extra = f"; banned: {', '.join(banned)}" if banned else ""
        return f"{self.manifest.path}: {sched.missing} chunks missing, {what}{extra}"

    def _act(
        self,
        client: httpx.AsyncClient,
        store: PartialArtifact,
        sched: Scheduler,
        actions: list[Action],
        now: float,
    ) -> bool:
        """Carry out ``actions``; True when the download is finished."""
        finished = False
        for a in actions:
            if isinstance(a, Request):
                self._start_request(client, store, a)
            elif isinstance(a, Cancel):
                task = self._tasks.pop(a.id, None)
                if task is not None:
                    task.cancel()
            elif isinstance(a, Ban):
                self._reports[a.source].banned = a.reason
            elif isinstance(a, FallBackToMirrors):
                if self.fallback:
                    self._add_fallback(client, sched, now)
            elif isinstance(a, Finished):
                finished = True
            elif isinstance(a, NeedMoreSources):
                self._find_more(client, sched, a.reason, a.missing)
        if finished:
            self._fill_report(sched)
        return finished

    def _fill_report(self, sched: Scheduler) -> None:
        for st in sched.stats():
            rep = self._reports[st.source]
            rep.chunks = st.chunks_verified
            rep.received = st.bytes_received
            rep.failures = st.failures
            rep.rate = st.rate
            rep.latency = st.latency
            rep.banned = st.banned

    # -- sources --------------------------------------------------------------------------

    def _add_fallback(self, client: httpx.AsyncClient, sched: Scheduler, now: float) -> None:
        for spec in self.fallback:
            self._add_source(client, spec, sched, now)
        self.fallback = []

    def _add_source(
        self, client: httpx.AsyncClient, spec: SourceSpec, sched: Scheduler, now: float
    ) -> None:
        self._specs[spec.base] = spec
        self._reports.setdefault(spec.base, SourceReport(url=spec.base, kind=spec.kind))
        if spec.kind == "mirror":
            self._act_source(client, sched, SourceAdded(spec.base, "mirror"), now)
            return
        # A peer: ask for its bitfield first; no bitfield endpoint means "holds everything".
        self._act_source(client, sched, SourceAdded(spec.base, "peer", complete=False), now)
        task = asyncio.create_task(self._bitfield(client, spec))
        self._side.add(task)
        task.add_done_callback(self._side.discard)

    def _find_more(
        self, client: httpx.AsyncClient, sched: Scheduler, reason: str, missing: int
    ) -> None:
        """Ask the finder for sources in a side task (one lookup at a time)."""
        if self.finder is None or self._finding is not None:
            return
        banned = {st.source for st in sched.stats() if st.banned or st.removed}
        need = SourceNeed(
            reason=reason,
            missing=missing,
            peers=tuple(b for b, s in self._specs.items() if s.kind == "peer" and b not in banned),
            known=frozenset(self._specs) | {s.base for s in self.fallback},
        )
        task = asyncio.create_task(self._lookup(self.finder, client, sched, need))
        self._finding = task
        self._side.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._side.discard(t)
            self._finding = None

        task.add_done_callback(done)

    async def _lookup(
        self, finder: SourceFinder, client: httpx.AsyncClient, sched: Scheduler, need: SourceNeed
    ) -> None:
        found = await finder.find(need, client)
        now = asyncio.get_running_loop().time()
        for spec in found:
            # Never re-add a source (a banned one stays in _specs for the whole download).
            if spec.base not in self._specs and not sched.done:
                self._add_source(client, spec, sched, now)

    def _act_source(
        self, client: httpx.AsyncClient, sched: Scheduler, ev: SourceAdded, now: float
    ) -> None:
        # Source additions happen outside the queue (before the loop or from it): handle now.
        self._act(client, self._store, sched, sched.handle(ev, now), now)

    async def _bitfield(self, client: httpx.AsyncClient, spec: SourceSpec) -> None:
        m = self.manifest
        bits = b"\xff" * ((m.chunk_count + 7) // 8)
        try:
            resp = await client.get(spec.bitfield_url(m.digest))
            if resp.status_code == 200 and len(resp.content) <= MAX_BITFIELD:
                bits = resp.content
        except (httpx.HTTPError, OSError):
            pass  # the data requests will tell whether the source works
        self._queue.put_nowait((HaveBitfield(spec.base, bits), asyncio.get_running_loop().time()))

    # -- requests ---------------------------------------------------------------------------

    def _start_request(self, client: httpx.AsyncClient, store: PartialArtifact, a: Request) -> None:
        spec = self._specs[a.source]
        rep = self._reports[a.source]
        loop = asyncio.get_running_loop()

        def push(ev: Event) -> None:
            self._queue.put_nowait((ev, loop.time()))

        if a.source in self._whole:
            # This source ignores Range and is already streaming the whole file to us.
            push(RequestFailed(a.id, "busy", "whole-file stream running", 1.0))
            return
        rep.requests += 1

        def on_whole(active: bool) -> None:
            if active:
                self._whole.add(a.source)
            else:
                self._whole.discard(a.source)

        def report(chunk: int, size: int, source: str, ok: bool | None) -> None:
            if ok is False:
                push(ChunkCorrupt(chunk, (source,)))
                return
            if ok:
                rep.bytes += size
                self._progress(store)
            # Already stored (another request won): say so anyway, it is idempotent.
            push(ChunkVerified(chunk, (source,) if ok else ()))

        async def sink(chunk: int, data: memoryview, source: str) -> None:
            if len(data) <= INLINE_WRITE:
                # Small chunks: hashing takes well under a millisecond, less than a
                # hand-off to a worker thread costs.
                report(chunk, len(data), source, self._write(store, chunk, data))
                return
            # Large chunks: hash in a thread (the GIL is released) and report from its
            # completion callback, so a cancel of this request (it lost an end-game
            # race) never leaves a stored chunk unreported: the scheduler would
            # otherwise fetch it forever.
            work = asyncio.ensure_future(asyncio.to_thread(self._write, store, chunk, data))

            def done(f: asyncio.Future[bool | None]) -> None:
                if not f.cancelled() and f.exception() is None:
                    report(chunk, len(data), source, f.result())

            work.add_done_callback(done)
            await asyncio.shield(work)

        task = asyncio.create_task(
            fetch(
                client,
                spec.artifact_url(self.manifest.path),
                a,
                size=self.manifest.size,
                chunk_size=self.manifest.chunk_size,
                sink=sink,
                push=push,
                on_whole=on_whole,
                budget=self._budget,
                on_version=lambda v: setattr(rep, "http_version", v),
            )
        )
        self._tasks[a.id] = task
        self._req_source[a.id] = a.source
        rid = a.id

        def forget(_: asyncio.Task[int]) -> None:
            self._tasks.pop(rid, None)

        task.add_done_callback(forget)

    def _write(self, store: PartialArtifact, chunk: int, data: memoryview) -> bool | None:
        # One writer at a time: PartialArtifact is not thread-safe. Hashing (the bulk of
        # the work) releases the GIL, so the event loop keeps streaming meanwhile.
        with self._lock:
            if store.has(chunk):
                return None
            try:
                store.write_chunk(chunk, data)
            except IntegrityError:
                return False
            return True

    def _progress(self, store: PartialArtifact) -> None:
        if self.on_progress is not None:
            m = self.manifest
            done = store.verified_count
            self.on_progress(done, m.chunk_count, min(m.size, done * m.chunk_size))


def _dedup(specs: Sequence[SourceSpec]) -> list[SourceSpec]:
    seen: set[str] = set()
    out = []
    for s in specs:
        if s.base not in seen:
            seen.add(s.base)
            out.append(s)
    return out


async def download(
    manifest: Manifest,
    sources: Sequence[SourceSpec],
    dest: str | Path,
    *,
    data_path: str | Path | None = None,
    **kwargs: object,
) -> DownloadReport:
    """Download ``manifest``'s artifact from ``sources`` to ``dest``, resuming from
    ``data_path`` (default ``<dest>.part``, journal beside it) if a run was interrupted."""
    part = Path(data_path) if data_path is not None else Path(f"{dest}.part")
    engine = Engine(manifest, sources, part, **kwargs)  # type: ignore[arg-type]
    return await engine.run(dest)
