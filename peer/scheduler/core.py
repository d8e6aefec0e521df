"""The swarm scheduler: which chunk to ask from which source, and when. No I/O, no clock.

Feed it events with :meth:`Scheduler.handle` (each with the driver's current
time); it returns the actions to carry out. Given the same seed, the same
events at the same times give the same actions, so the asyncio engine and the
discrete-event simulator run identical logic. See ``docs/scheduler.md``.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from peer.scheduler.actions import (
    Action,
    Ban,
    Cancel,
    FallBackToMirrors,
    Finished,
    NeedMoreSources,
    Request,
)
from peer.scheduler.config import SchedulerConfig
from peer.scheduler.estimate import Ewma, RateMeter
from peer.scheduler.events import (
    BytesReceived,
    ChunkCorrupt,
    ChunkVerified,
    Event,
    Have,
    HaveBitfield,
    Lacks,
    RequestDone,
    RequestFailed,
    RequestStarted,
    SourceAdded,
    SourceKind,
    SourceRemoved,
    Tick,
)


@dataclass(frozen=True)
class SourceStats:
    """What the scheduler knows about one source (for reports and tests)."""

    source: str
    kind: SourceKind
    rate: float | None
    latency: float | None
    bytes_received: int
    chunks_verified: int
    requests_in_flight: int
    failures: int
    banned: str | None
    removed: bool


# bytes 0/1 -> ASCII "0"/"1", to turn a holdings bytearray into an int bitmask in one go.
_TO_BITS = bytes(0x30 + (b & 1) if b < 2 else 0x31 for b in range(256))


_sort_key = operator.attrgetter("sort_key")

# What an event changed, for the pass that follows (see Scheduler._apply).
_IGNORED, _BYTES, _CALM, _TOUCHED, _DIRTY = range(5)


def _combine(a: int, b: int) -> int:
    """What two events together changed (see Scheduler._apply)."""
    if a == _IGNORED or a == b == _CALM:
        return b
    if b == _IGNORED:
        return a
    if a == b == _BYTES:
        return _BYTES
    if _BYTES in (a, b) or _DIRTY in (a, b) or a == b == _TOUCHED:
        return _DIRTY  # bytes and something else, or two announcers: a full pass
    return _TOUCHED if _TOUCHED in (a, b) else _CALM


def _mask_of(has: bytearray) -> int:
    """Bit ``c`` set iff ``has[c]``: lets a pick intersect holdings with free chunks at C speed."""
    return int(has[::-1].translate(_TO_BITS), 2) if has else 0


class _Source:
    __slots__ = (
        "backoff_until",
        "banned",
        "bytes_received",
        "chunks_verified",
        "failures",
        "has",
        "held",
        "id",
        "kind",
        "known",
        "latency",
        "mask",
        "max_chunks",
        "meter",
        "miss_epoch",
        "miss_mask",
        "next_chunk",
        "outstanding",
        "probe_at",
        "removed",
        "requests",
        "sort_key",
    )

    def __init__(
        self, sid: str, kind: SourceKind, complete: bool, cfg: SchedulerConfig, full: int
    ) -> None:
        self.id = sid
        self.kind = kind
        # None: holds every chunk. Otherwise one byte per chunk.
        self.has: bytearray | None = None if complete or kind == "mirror" else bytearray()
        self.known = complete or kind == "mirror"
        # The same holdings as a bitmask (bit c: holds chunk c), and how many are held.
        self.mask = full if self.has is None else 0
        self.held = 0
        self.banned: str | None = None
        self.removed = False
        self.failures = 0
        self.backoff_until = 0.0
        self.meter = RateMeter(cfg.ewma_alpha, cfg.rate_window)
        self.latency = Ewma(cfg.ewma_alpha)
        self.requests: set[int] = set()
        self.outstanding = 0  # bytes requested from it and not received yet
        # Its place in the pass order: fastest (measured, else assumed) rate first.
        self.sort_key = (-max(1.0, cfg.initial_rate), sid)
        self.next_chunk = -1  # chunk after its last request: continuing there coalesces
        self.probe_at = 0.0
        self.max_chunks: int | None = None  # halved by each 404/416 on a multi-chunk range
        self.bytes_received = 0
        self.chunks_verified = 0
        # The end-game found nothing to steal for this source at this steal epoch with
        # these holdings (see Scheduler._steal_epoch): until either changes, it still won't.
        self.miss_epoch = -1
        self.miss_mask = 0

    def holds(self, chunk: int) -> bool:
        return self.has is None or (chunk < len(self.has) and bool(self.has[chunk]))

    @property
    def present(self) -> bool:
        return self.banned is None and not self.removed


@dataclass(slots=True)
class _Req:
    action: Request
    issued: float
    started: float | None = None
    last_progress: float = 0.0
    received: int = 0
    cursor: int = 0  # first chunk of this request whose bytes have not all arrived

    def ahead(self) -> range:
        """Chunks of this request still (partly) to come."""
        return range(max(self.cursor, self.action.first), self.action.last + 1)


class Scheduler:
    """Sans-I/O download scheduler for one artifact of ``chunk_count`` chunks.

    ``size`` and ``chunk_size`` give the byte ranges; ``verified`` lists chunks
    already held (resume); ``seed`` makes every random choice reproducible.
    """

    def __init__(
        self,
        *,
        size: int,
        chunk_size: int,
        seed: int = 0,
        verified: Iterable[int] = (),
        config: SchedulerConfig | None = None,
    ) -> None:
        if chunk_size <= 0 or size < 0:
            raise ValueError("size must be >= 0 and chunk_size > 0")
        self.config = config or SchedulerConfig()
        self.size = size
        self.chunk_size = chunk_size
        self.chunk_count = -(-size // chunk_size)
        self._rng = random.Random(seed)
        # Tie-break order: one random key per chunk, drawn once, so picks are reproducible.
        order = list(range(self.chunk_count))
        self._rng.shuffle(order)
        self._tiebreak = [0] * self.chunk_count
        for rank, chunk in enumerate(order):
            self._tiebreak[chunk] = rank
        self._verified = bytearray(self.chunk_count)
        self._missing = self.chunk_count
        for chunk in verified:
            if 0 <= chunk < self.chunk_count and not self._verified[chunk]:
                self._verified[chunk] = 1
                self._missing -= 1
        self._full = (1 << self.chunk_count) - 1
        self._vmask = _mask_of(self._verified)  # bit c: chunk c verified
        self._multi = 0  # bit c: chunk c carried by two requests or more (a stolen tail)
        # Bit c set iff chunk c is neither verified nor carried by a request: what a pick
        # may choose from, kept incrementally so picks need no scan over every chunk.
        self._free = self._full
        for c in range(self.chunk_count):
            if self._verified[c]:
                self._free &= ~(1 << c)
        self._carriers: dict[int, set[int]] = {}
        self._sources: dict[str, _Source] = {}
        self._requests: dict[int, _Req] = {}
        self._next_id = 1
        # Availability = sources holding everything + per-chunk count of partial holders.
        self._complete_holders = 0
        self._partial_avail = [0] * self.chunk_count
        self._now = 0.0
        self._finished_sent = False
        self._advice_at = 0.0
        # Summed rate of usable sources during a pass (None: not computed yet this pass;
        # only picks read it, and rates and usability cannot change while a pass runs).
        self._pass_total: float | None = None
        # Cache of _stealable(), None: stale. Invalidated where its inputs change (a
        # request issued or forgotten, a cursor moving, a chunk verified).
        self._steal_mask: int | None = None
        # Present, known sources sorted by (-rate, id): the pass order. Filtering out the
        # sources backing off keeps it sorted, so it is only rebuilt when a rate or the
        # set changes (None: stale).
        self._order: list[_Source] | None = None
        self._resort = False  # a rate changed: sort the order again (by each sort_key)
        self._mirrors = 0  # present mirrors
        # _total_rate() as last computed, valid until _total_until (the first end of a
        # back-off then running) unless a rate, a back-off or the set of sources changes.
        self._total: float | None = None
        self._total_until = 0.0
        # Bumped by every change that can turn a failed end-game steal into a success:
        # a new request, a slower source (see _new_rate), a new latency, a chunk carried
        # by one request again. Everything else only makes stealing less attractive
        # (time passes, bytes arrive, a source gets faster, requests end, chunks get
        # verified), so a steal that failed fails again until the epoch (or the
        # thief's holdings) moves.
        self._steal_epoch = 0
        # True when the last full pass issued nothing and, since then, nothing happened
        # that could let a source act except time passing (and, for a Have, the source
        # that announced it). Until ``_quiet_until`` (the earliest end of a back-off or
        # probe wait seen by that pass) another full pass would issue nothing either,
        # so it is skipped. A pure speed-up: the actions are the same.
        self._quiet = False
        self._quiet_until = 0.0
        self._only: _Source  # the source a BytesReceived concerned (see _apply)
        self._touched: _Source  # the source a Have concerned

    # -- queries -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every chunk is verified."""
        return self._missing == 0

    @property
    def missing(self) -> int:
        """How many chunks are not verified yet."""
        return self._missing

    def is_verified(self, chunk: int) -> bool:
        """Chunk ``chunk`` is verified."""
        return bool(self._verified[chunk])

    @property
    def in_flight(self) -> list[Request]:
        """The requests the scheduler believes are running, oldest first."""
        return [r.action for r in self._requests.values()]

    @property
    def stuck(self) -> bool:
        """Not done, nothing in flight, and no present source holds any missing chunk."""
        if self.done or self._requests:
            return False
        return all(
            self._availability(c) == 0 for c in range(self.chunk_count) if not self._verified[c]
        )

    def stats(self) -> list[SourceStats]:
        """Per-source statistics, in the order sources were added."""
        return [
            SourceStats(
                source=s.id,
                kind=s.kind,
                rate=s.meter.avg.value,
                latency=s.latency.value,
                bytes_received=s.bytes_received,
                chunks_verified=s.chunks_verified,
                requests_in_flight=len(s.requests),
                failures=s.failures,
                banned=s.banned,
                removed=s.removed,
            )
            for s in self._sources.values()
        ]

    def next_wakeup(self) -> float | None:
        """Earliest time a :class:`Tick` could change anything (time-out, back-off end), or None."""
        times: list[float] = []
        for req in self._requests.values():
            times.append(self._stall_deadline(req))
        for s in self._sources.values():
            if s.present and s.backoff_until > self._now:
                times.append(s.backoff_until)
        if not self.done and self._advice_needed():
            times.append(max(self._advice_at, self._now))
        return min(times) if times else None

    # -- the one entry point --------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` seen at time ``now`` (seconds, any epoch, never decreasing)."""
        self._now = max(self._now, now)
        out: list[Action] = []
        kind = self._apply(event, out)
        if kind == _IGNORED:
            return out
        only = (self._only,) if kind == _BYTES else ()
        return self._conclude(out, kind, isinstance(event, Tick), only)

    def handle_all(self, events: Iterable[Event], now: float) -> list[Action]:
        """Apply several events seen at the same time ``now``, then decide once.

        What a driver that drains its queue should call: the state changes are those
        of :meth:`handle` for each event in turn, but the scheduling pass runs once,
        after the last (so, e.g., progress reports and a :class:`Tick`, or a chunk's
        last bytes, its verification and the end of its request, cost one pass).
        """
        self._now = max(self._now, now)
        out: list[Action] = []
        kind = _IGNORED
        tick = False
        only: list[_Source] = []
        for event in events:
            k = self._apply(event, out)
            if isinstance(event, Tick):
                tick = True
            if k == _BYTES and self._only not in only:
                only.append(self._only)
            kind = _combine(kind, k)
        if kind == _IGNORED:
            return out
        return self._conclude(out, kind, tick, only)

    def _apply(self, event: Event, out: list[Action]) -> int:
        """Apply one event's state changes; returns what a pass has to look at:
        _IGNORED (nothing changed), _BYTES (only ``self._only`` can gain), _CALM (nobody
        can gain but by time passing), _TOUCHED (only ``self._touched`` can) or _DIRTY."""
        # Cases in order of frequency in a swarm (a match tries them in turn).
        match event:
            case BytesReceived():
                req = self._requests.get(event.request)
                if req is None:
                    return _IGNORED
                self._only = self._bytes(req, event.n, out)
                return _BYTES
            case Tick():
                n = len(out)
                self._timeouts(out)
                return _CALM if len(out) == n else _DIRTY  # calm if no request stalled
            case RequestFailed():
                req = self._requests.get(event.request)
                if req is None:
                    return _CALM
                self._request_failed(req, event, out)
            case Have():
                # More holders only make chunks less rare: nobody but the announcer
                # gains something to ask for.
                s = self._sources.get(event.source)
                if s is None or not s.present or not 0 <= event.chunk < self.chunk_count:
                    return _CALM
                self._set_one(s, event.chunk, True)
                self._touched = s
                return _TOUCHED
            case SourceAdded():
                self._add_source(event)
            case SourceRemoved():
                s = self._sources.get(event.source)
                if s is not None and not s.removed:
                    self._cancel_source(s, "source removed", out)
                    self._set_holdings(s, None, present=False)
                    if s.kind == "mirror" and s.banned is None:
                        self._mirrors -= 1
                    s.removed = True
            case HaveBitfield():
                s = self._sources.get(event.source)
                if s is not None and s.present:
                    self._set_bitfield(s, event.bitfield)
            case Lacks():
                s = self._sources.get(event.source)
                if s is not None and s.present and 0 <= event.chunk < self.chunk_count:
                    self._set_one(s, event.chunk, False)
            case RequestStarted():
                req = self._requests.get(event.request)
                if req is None:
                    return _CALM
                self._started(req)
            case ChunkVerified():
                self._chunk_verified(event, out)
            case ChunkCorrupt():
                self._chunk_corrupt(event, out)
            case RequestDone():
                req = self._requests.get(event.request)
                if req is None:
                    return _CALM
                self._request_done(req, out)
        return _DIRTY

    def _finish(self, out: list[Action]) -> bool:
        """If every chunk is verified: cancel what is left, say Finished once; True then."""
        if not self.done:
            return False
        if not self._finished_sent:
            self._finished_sent = True
            for rid in list(self._requests):
                self._drop_request(rid, "download finished", out)
            out.append(Finished())
        return True

    def _conclude(
        self, out: list[Action], kind: int, tick: bool, only: Sequence[_Source]
    ) -> list[Action]:
        """The decision after the events: a pass as narrow as ``kind`` allows, then advice.
        ``only``: for _BYTES, the sources whose requests progressed (each is filled in turn)."""
        if self._finish(out):
            return out
        self._pass_total = None
        if kind == _BYTES:
            self._quiet = False
            for s in only:
                self._fill(s, out)
        elif kind != _DIRTY and self._quiet and self._now < self._quiet_until:
            if kind == _TOUCHED:
                self._schedule_from(self._touched, out)
        else:
            n = len(out)
            self._schedule(out)
            self._quiet = len(out) == n  # a pass appends only the requests it issues
        if tick:
            self._advise(out)
        return out

    # -- sources and holdings ---------------------------------------------------------

    def _add_source(self, ev: SourceAdded) -> None:
        old = self._sources.get(ev.source)
        if old is not None and old.present:
            return
        if old is not None and old.banned is not None:
            return  # a banned source stays banned for this download
        s = _Source(ev.source, ev.kind, ev.complete, self.config, self._full)
        self._sources[ev.source] = s
        self._order = self._total = None
        if s.kind == "mirror":
            self._mirrors += 1
        if s.has is None:
            self._complete_holders += 1

    def _set_holdings(self, s: _Source, has: bytearray | None, *, present: bool = True) -> None:
        """Replace ``s``'s holdings, keeping the availability counts right."""
        if s.present and s.known:
            if s.has is None:
                self._complete_holders -= 1
            else:
                held = s.has
                # Indexing, not enumerate(): mypyc cannot iterate a bytearray (native build).
                for c in range(len(held)):
                    if held[c]:
                        self._partial_avail[c] -= 1
        self._order = self._total = None  # whether it is known (in the pass order) may change
        s.has = has
        s.mask = self._full if has is None else _mask_of(has)
        s.held = self.chunk_count if has is None else sum(has)
        if present and s.present:
            s.known = True
            if has is None:
                self._complete_holders += 1
            else:
                for c in range(len(has)):
                    if has[c]:
                        self._partial_avail[c] += 1

    def _set_bitfield(self, s: _Source, bitfield: bytes) -> None:
        has = bytearray(self.chunk_count)
        for c in range(min(self.chunk_count, len(bitfield) * 8)):
            if bitfield[c >> 3] & (0x80 >> (c & 7)):
                has[c] = 1
        self._set_holdings(s, None if all(has) else has)

    def _set_one(self, s: _Source, chunk: int, value: bool) -> None:
        if s.holds(chunk) == value and s.known:
            return
        if s.known and s.present and s.has is not None and len(s.has) == self.chunk_count:
            # The common case (a Have from a partial peer): update in place, O(1).
            step = 1 if value else -1
            s.has[chunk] = 1 if value else 0
            s.held += step
            s.mask ^= 1 << chunk
            self._partial_avail[chunk] += step
            if s.held == self.chunk_count:
                self._set_holdings(s, None)  # now complete: counted as a complete holder
            return
        if s.has is None:
            has = bytearray(b"\x01" * self.chunk_count)
        elif not s.known:
            has = bytearray(self.chunk_count)
        else:
            has = bytearray(s.has)
        has[chunk] = 1 if value else 0
        self._set_holdings(s, None if all(has) else has)

    def _availability(self, chunk: int) -> int:
        return self._complete_holders + self._partial_avail[chunk]

    # -- request life cycle -----------------------------------------------------------

    def _started(self, req: _Req) -> None:
        if req.started is None:
            req.started = self._now
            req.last_progress = self._now
            s = self._sources[req.action.source]
            s.latency.add(max(0.0, self._now - req.issued))
            s.meter.open(self._now)
            self._steal_epoch += 1

    def _bytes(self, req: _Req, n: int, out: list[Action]) -> _Source:
        self._started(req)
        s = self._sources[req.action.source]
        received = min(req.action.length, req.received + max(0, n))
        s.outstanding -= received - req.received
        req.received = received
        req.last_progress = self._now
        s.bytes_received += n
        avg = s.meter.avg
        before = avg.value
        s.meter.add(n, self._now)
        if avg.value != before:
            self._new_rate(s)
        # Chunks whose bytes have fully passed: nothing more to expect from them here.
        cursor = req.action.first + req.received // self.chunk_size
        if req.received == req.action.length:
            cursor = req.action.last + 1
        if cursor != req.cursor:
            req.cursor = cursor
            self._steal_mask = None
        self._cancel_if_useless(req, out)
        return s

    def _cancel_if_useless(self, req: _Req, out: list[Action]) -> None:
        """Cancel ``req`` if every chunk still ahead of it is verified (it lost a race)."""
        action = req.action
        lo = req.cursor if req.cursor > action.first else action.first
        if lo > action.last:
            return  # nothing ahead
        ahead = ((1 << (action.last + 1)) - 1) >> lo << lo
        if not ahead & ~self._vmask:
            self._drop_request(action.id, "verified elsewhere", out)

    def _chunk_verified(self, ev: ChunkVerified, out: list[Action]) -> None:
        c = ev.chunk
        if not 0 <= c < self.chunk_count:
            return
        for sid in ev.sources:
            s = self._sources.get(sid)
            if s is not None:
                s.failures = 0
                s.chunks_verified += 1
        if self._verified[c]:
            return
        self._verified[c] = 1
        self._vmask |= 1 << c
        self._missing -= 1
        self._free &= ~(1 << c)
        self._steal_mask = None
        for rid in list(self._carriers.get(c, ())):
            req = self._requests.get(rid)
            if req is not None:
                self._cancel_if_useless(req, out)

    def _chunk_corrupt(self, ev: ChunkCorrupt, out: list[Action]) -> None:
        for sid in ev.sources:
            s = self._sources.get(sid)
            if s is None or s.banned is not None:
                continue
            self._cancel_source(s, "source banned", out)
            self._set_holdings(s, None, present=False)
            if s.kind == "mirror" and not s.removed:
                self._mirrors -= 1
            s.banned = f"corrupt data in chunk {ev.chunk}"
            out.append(Ban(sid, s.banned))

    def _request_done(self, req: _Req, out: list[Action]) -> None:
        # A short body, or a full one whose chunks were never reported verified (the
        # driver lost them): either way the source gets no immediate retry, so a
        # driver bug or a lying server cannot make it fetch the same range forever.
        short = req.received < req.action.length
        lost = not short and not all(self._verified[c] for c in req.action.chunks)
        s = self._sources[req.action.source]
        self._forget(req)
        if short or lost:
            self._failure(s, None)
        elif s.max_chunks is not None:
            s.max_chunks *= 2

    def _request_failed(self, req: _Req, ev: RequestFailed, out: list[Action]) -> None:
        s = self._sources[req.action.source]
        ahead = list(req.ahead())
        self._forget(req)
        if ev.kind == "gone":
            self._set_holdings(s, bytearray(self.chunk_count))
        elif ev.kind == "missing":
            if len(ahead) == 1:
                self._set_one(s, ahead[0], False)
            elif ahead:
                # Some chunk in the range is not held, but which? Bisect: retry from the
                # same place with half as many chunks, down to one (then it is known).
                s.max_chunks = max(1, len(ahead) // 2)
                s.next_chunk = ahead[0]
        elif ev.kind == "busy":
            wait = ev.retry_after if ev.retry_after is not None else self.config.base_backoff
            s.backoff_until = max(s.backoff_until, self._now + wait)
            self._total = None
        else:
            self._failure(s, None)

    def _failure(self, s: _Source, backoff: float | None) -> None:
        s.failures += 1
        cfg = self.config
        wait = backoff if backoff is not None else cfg.base_backoff * 2 ** (s.failures - 1)
        s.backoff_until = self._now + min(cfg.max_backoff, wait)
        self._total = None

    def _stall_deadline(self, req: _Req) -> float:
        s = self._sources[req.action.source]
        cfg = self.config
        limit = max(cfg.stall_timeout, cfg.stall_latencies * s.latency.get(cfg.initial_latency))
        ref = req.last_progress if req.started is not None else req.issued
        return ref + limit

    def _timeouts(self, out: list[Action]) -> None:
        now = self._now
        cfg = self.config
        stall, factor, initial = cfg.stall_timeout, cfg.stall_latencies, cfg.initial_latency
        sources = self._sources
        stalled: list[int] = []
        for rid, req in self._requests.items():
            # _stall_deadline() inlined: this runs for every request on every Tick.
            ref = req.last_progress if req.started is not None else req.issued
            if now < ref + stall:
                continue  # the limit is at least stall_timeout
            limit = max(stall, factor * sources[req.action.source].latency.get(initial))
            if now >= ref + limit:
                stalled.append(rid)
        for rid in stalled:
            s = sources[self._requests[rid].action.source]
            s.meter.stalled_sample(now)
            self._new_rate(s)
            self._drop_request(rid, "stalled", out)
            self._failure(s, None)

    def _forget(self, req: _Req) -> None:
        self._steal_mask = None
        rid = req.action.id
        self._requests.pop(rid, None)
        s = self._sources[req.action.source]
        s.requests.discard(rid)
        s.outstanding -= req.action.length - req.received
        if not s.requests:
            s.meter.close()
        for c in req.action.chunks:
            carriers = self._carriers.get(c)
            if carriers is not None:
                carriers.discard(rid)
                if not carriers:
                    del self._carriers[c]
                    if not self._verified[c]:
                        self._free |= 1 << c
                elif len(carriers) == 1:
                    self._multi &= ~(1 << c)
                    self._steal_epoch += 1  # stealable again (its thief gave it up)

    def _drop_request(self, rid: int, reason: str, out: list[Action]) -> None:
        req = self._requests.get(rid)
        if req is None:
            return
        self._forget(req)
        out.append(Cancel(rid, req.action.source, reason))

    def _cancel_source(self, s: _Source, reason: str, out: list[Action]) -> None:
        for rid in sorted(s.requests):
            self._drop_request(rid, reason, out)

    # -- choosing ------------------------------------------------------------------------

    def _rate(self, s: _Source) -> float:
        # Floored: a source measured at zero (it stalled) must not divide anything by zero.
        return max(1.0, s.meter.avg.get(self.config.initial_rate))

    def _latency(self, s: _Source) -> float:
        return s.latency.get(self.config.initial_latency)

    def _usable(self, s: _Source) -> bool:
        return s.present and s.known and self._now >= s.backoff_until

    def _outstanding(self, s: _Source) -> int:
        return s.outstanding

    def _wants_more(self, s: _Source) -> bool:
        if not self._usable(s) or len(s.requests) >= self.config.max_requests_per_source:
            return False
        if not s.requests:
            return True
        # Keep the bandwidth-delay product (plus a margin) requested but not yet received.
        target = self._rate(s) * (2 * self._latency(s) + self.config.pipeline_seconds)
        return self._outstanding(s) < target

    def _schedule(self, out: list[Action]) -> None:
        """The scheduling pass: each usable source, fastest first, gets what it can take."""
        self._quiet_until = self._pass(self._pass_order(), out)

    def _schedule_from(self, s: _Source, out: list[Action]) -> None:
        """The pass when only ``s`` can have gained something to do (a quiet state): the
        sources before it in the order would do nothing, so start at ``s``; if ``s`` does
        nothing either, neither would the sources after it."""
        order = self._pass_order()
        try:
            i = order.index(s)
        except ValueError:
            return  # not usable at all
        n = len(out)
        self._pass(order[i : i + 1], out)
        if len(out) != n:
            self._quiet = False
            self._pass(order[i + 1 :], out)

    def _pass(self, order: list[_Source], out: list[Action]) -> float:
        """Fill ``order``'s sources in turn; returns the earliest time one of them ends a
        back-off or probe wait (what could let it act without any event)."""
        now = self._now
        wake = math.inf
        for s in order:
            # _usable() inlined (the order holds only present, known sources), then the
            # checks _fill starts with: this loop runs over every source on most events.
            if now < s.backoff_until:
                if s.backoff_until < wake:
                    wake = s.backoff_until
                continue
            if now < s.probe_at < wake:
                wake = s.probe_at
            mask = s.mask
            if not mask & self._free:
                if s.requests:
                    continue  # busy and nothing free that it holds: _fill would stop at once
                stealable = self._steal_mask
                if not mask & (self._stealable() if stealable is None else stealable):
                    continue  # idle, but nothing it holds could be stolen either
                if s.miss_epoch == self._steal_epoch and s.miss_mask == mask:
                    continue  # _fill would only retry a steal known to fail
            self._fill(s, out)
        return wake

    def _pass_order(self) -> list[_Source]:
        """The pass order: present, known sources by measured rate, fastest first (ties by
        id); kept between passes, re-sorted only when a rate or the source set changed."""
        order = self._order
        if order is not None and not self._resort:
            return order
        if order is None:
            order = [
                s for s in self._sources.values() if s.banned is None and not s.removed and s.known
            ]
            self._order = order
        order.sort(key=_sort_key)
        self._resort = False
        return order

    def _new_rate(self, s: _Source) -> None:
        """``s``'s measured rate changed: its place in the order, and end-game sums."""
        old = s.sort_key[0]
        s.sort_key = (-max(1.0, s.meter.avg.get(self.config.initial_rate)), s.id)
        self._resort = True
        self._total = None
        # A faster source only makes its started requests finish sooner, which makes
        # stealing from them less attractive; a slower one, or one with a request not
        # started yet (its wait enters the sums), can make a failed steal succeed.
        requests = self._requests
        if s.sort_key[0] > old or any(requests[r].started is None for r in s.requests):
            self._steal_epoch += 1

    def _fill(self, s: _Source, out: list[Action]) -> None:
        for _ in range(self.config.max_requests_per_source):
            mask = s.mask
            if not mask & self._free:
                if s.requests:
                    return  # _pick would find nothing: skip the costlier checks
                stealable = self._steal_mask
                if not mask & (self._stealable() if stealable is None else stealable):
                    return
            if not self._wants_more(s):
                return
            action = self._pick(s)
            if action is None:
                return
            self._issue(action)
            out.append(action)

    def _total_rate(self) -> float:
        now = self._now
        if self._total is not None and now < self._total_until:
            return self._total
        # _usable() and _rate() inlined.
        initial = self.config.initial_rate
        total = 0.0
        until = math.inf
        for s in self._sources.values():
            if s.banned is None and not s.removed and s.known:
                if now >= s.backoff_until:
                    v = s.meter.avg.value
                    total += max(1.0, initial if v is None else v)
                elif s.backoff_until < until:
                    until = s.backoff_until
        self._total = total
        self._total_until = until
        return total

    def _is_slow(self, s: _Source, total: float) -> bool:
        rate = s.meter.avg.value
        return rate is not None and rate < self.config.slow_fraction * total

    def _pick(self, s: _Source) -> Request | None:
        free = self._free
        mine = free & s.mask  # chunks neither verified nor claimed that this source holds
        if not mine:
            return self._steal(s)
        cfg = self.config
        total = self._pass_total
        if total is None:
            total = self._pass_total = self._total_rate()
        slow = self._is_slow(s, total)
        probing = slow and self._now >= s.probe_at
        fast_start = self.chunk_count - self._missing < cfg.fast_start_chunks
        unclaimed = free.bit_count()
        complete = self._complete_holders
        partial = self._partial_avail
        best_rarity: int | None = None
        candidates: list[int] = []  # the chunks of best rarity, ascending
        bits = mine
        while bits:
            low = bits & -bits
            c = low.bit_length() - 1
            bits ^= low
            avail = complete + partial[c]
            if slow and not probing and avail > 1:
                continue  # a slow source only gets what nobody else has
            rarity = -avail if fast_start else avail
            if best_rarity is None or rarity < best_rarity:
                best_rarity = rarity
                candidates = [c]
            elif rarity == best_rarity:
                candidates.append(c)
        if not candidates:
            return self._steal(s)
        best_chunk = self._start_of(s, candidates)
        rate = self._rate(s)
        want = rate * cfg.request_seconds
        if total > 0:
            # Near the end, share what is left in proportion to rate so all finish together.
            want = min(want, unclaimed * self.chunk_size * rate / total)
        want = min(want, cfg.max_request_bytes)
        if probing:
            s.probe_at = self._now + cfg.probe_interval
            want = 0.0
        count = max(1, int(want // self.chunk_size))
        if s.max_chunks is not None:
            count = min(count, s.max_chunks)
        last = best_chunk
        while last + 1 - best_chunk < count and (mine >> (last + 1)) & 1:
            last += 1
        return self._make(s, best_chunk, last)

    def _start_of(self, s: _Source, candidates: list[int]) -> int:
        """Where to start among equally rare ``candidates``: continue the source's last
        request if possible, else open the longest free run (random among equals) at its
        beginning, or in its middle if another request is streaming towards it."""
        if s.next_chunk in candidates:
            return s.next_chunk
        best: tuple[int, int] | None = None
        run_first = candidates[0]
        prev = candidates[0]
        runs: list[tuple[int, int]] = []
        for c in candidates[1:]:
            if c != prev + 1:
                runs.append((run_first, prev))
                run_first = c
            prev = c
        runs.append((run_first, prev))
        chosen = runs[0]
        for first, last in runs:
            key = (-(last - first), self._tiebreak[first])
            if best is None or key < best:
                best = key
                chosen = (first, last)
        first, last = chosen
        if first > 0 and first - 1 in self._carriers:
            return first + (last - first + 1) // 2
        return first

    def _steal(self, s: _Source) -> Request | None:
        """End-game: take over the tail of the request that would finish last, if faster."""
        if s.requests:
            return None  # only an idle source steals, so duplicates stay few
        if s.miss_epoch == self._steal_epoch and s.miss_mask == s.mask:
            return None  # failed before, and nothing since could make it succeed
        # The chunks this source could take: held by it, and stealable (ahead of a
        # request, not verified, carried by that request alone).
        takeable = s.mask & self._stealable()
        if not takeable:
            return None  # it holds none of the chunks any request could give up
        cfg = self.config
        initial = cfg.initial_rate
        rate_s = self._rate(s)
        lat_s = self._latency(s)
        best: tuple[float, int, int] | None = None
        for req in self._requests.values():
            action = req.action
            # Takeable chunks still ahead of this request (bitmask of its remaining range).
            lo = req.cursor if req.cursor > action.first else action.first
            mine = takeable & ((1 << (action.last + 1)) - 1) >> lo << lo
            if not mine:
                continue
            other = self._sources[action.source]
            if other is s:
                continue
            # The run this source could take: the last run of adjacent chunks, nearest
            # the end, that only this request carries and this source holds (a partial
            # peer skips the chunks it lacks; a second thief skips stolen ones).
            top = mine.bit_length() - 1
            first = top
            while first > 0 and (mine >> (first - 1)) & 1:
                first -= 1
            rate_o = max(1.0, other.meter.avg.get(initial))
            wait_o = 0.0
            if req.started is None:
                wait_o = max(0.0, req.issued + self._latency(other) - self._now)
            remaining = action.length - req.received
            finish_o = wait_o + remaining / rate_o
            # Split so both finish together: other keeps B-x, this one takes x.
            x = (finish_o - lat_s) * rate_o * rate_s / (rate_o + rate_s)
            n = min(top - first + 1, int(x // self.chunk_size))
            if n < 1:
                n = 1
                last_len = self._chunk_len(top)
                mine_t = lat_s + last_len / rate_s
                if mine_t >= finish_o * (1 - cfg.endgame_gain):
                    continue
            first = top - n + 1
            gain = finish_o
            if best is None or (gain, -first) > (best[0], -best[1]):
                best = (gain, first, top)
        if best is None:
            s.miss_epoch = self._steal_epoch
            s.miss_mask = s.mask
            return None
        return self._make(s, best[1], best[2])

    def _stealable(self) -> int:
        """Bitmask of the chunks a thief could take: still ahead of a request, not
        verified, carried by that request alone. Cached until requests or chunks change."""
        mask = self._steal_mask
        if mask is None:
            mask = 0
            for req in self._requests.values():
                action = req.action
                lo = req.cursor if req.cursor > action.first else action.first
                mask |= ((1 << (action.last + 1)) - 1) >> lo << lo  # chunks ahead of it
            mask &= ~(self._vmask | self._multi)
            self._steal_mask = mask
        return mask

    def _chunk_len(self, c: int) -> int:
        return min(self.chunk_size, self.size - c * self.chunk_size)

    def _make(self, s: _Source, first: int, last: int) -> Request:
        rid = self._next_id
        self._next_id += 1
        return Request(
            id=rid,
            source=s.id,
            first=first,
            last=last,
            start=first * self.chunk_size,
            end=min((last + 1) * self.chunk_size, self.size),
        )

    def _issue(self, action: Request) -> None:
        self._steal_mask = None
        self._steal_epoch += 1
        req = _Req(action=action, issued=self._now, last_progress=self._now)
        self._requests[action.id] = req
        s = self._sources[action.source]
        s.requests.add(action.id)
        s.outstanding += action.length
        s.next_chunk = action.last + 1
        for c in action.chunks:
            carriers = self._carriers.setdefault(c, set())
            carriers.add(action.id)
            if len(carriers) == 2:
                self._multi |= 1 << c
            self._free &= ~(1 << c)

    # -- advice ----------------------------------------------------------------------------

    def _orphans(self) -> int:
        """Missing chunks no present source holds."""
        if self._complete_holders:
            return 0  # a complete source holds every chunk
        verified = self._verified
        partial = self._partial_avail
        return sum(1 for c in range(self.chunk_count) if not verified[c] and partial[c] == 0)

    def _fallback_reason(self, orphans: int) -> str | None:
        if self._mirrors:
            return None
        if orphans:
            return "peers lack some chunks"
        # No mirror is present, so every present, known source (the pass order) is a peer.
        now = self._now
        order = self._order if self._order is not None else self._pass_order()
        for s in order:
            if now >= s.backoff_until:
                return None
        return "no peer is usable"

    def _advice_needed(self) -> bool:
        orphans = self._orphans()
        return bool(orphans) or self._fallback_reason(orphans) is not None

    def _advise(self, out: list[Action]) -> None:
        if self._now < self._advice_at:
            return
        orphans = self._orphans()
        why = self._fallback_reason(orphans)
        if orphans:
            out.append(NeedMoreSources(orphans, f"{orphans} missing chunks have no source"))
        if why is not None:
            out.append(FallBackToMirrors(why))
        if orphans or why is not None:
            self._advice_at = self._now + self.config.advice_interval
