"""The scheduler's incremental bookkeeping (bitmasks, counts) always equals a recount.

Picks read bitmasks kept up to date event by event instead of scanning every
chunk; these tests recompute them from scratch after every event.
"""

from __future__ import annotations

import copy
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from peer.scheduler import Action, Finished, Request, Scheduler, SchedulerConfig
from peer.scheduler.events import (
    BytesReceived,
    ChunkVerified,
    Event,
    Have,
    HaveBitfield,
    Lacks,
    RequestDone,
    RequestFailed,
    RequestStarted,
    SourceAdded,
    SourceRemoved,
    Tick,
)
from tests.swarm.fluid import FakeSource, run

CS = 64 * 1024


def check(sched: Scheduler) -> None:
    """Recount every incremental structure and compare."""
    n = sched.chunk_count
    free = 0
    for c in range(n):
        if not sched._verified[c] and c not in sched._carriers:
            free |= 1 << c
    assert sched._free == free
    complete = 0
    partial = [0] * n
    for s in sched._sources.values():
        held = [s.holds(c) for c in range(n)]
        assert s.mask == sum(1 << c for c in range(n) if held[c])
        if s.has is not None:
            assert s.held == sum(s.has)
        if s.present and s.known:
            if s.has is None:
                complete += 1
            else:
                for c in range(n):
                    partial[c] += held[c]
    assert sched._complete_holders == complete
    assert sched._mirrors == sum(
        1 for s in sched._sources.values() if s.present and s.kind == "mirror"
    )
    for s in sched._sources.values():
        left = [sched._requests[r].action.length - sched._requests[r].received for r in s.requests]
        assert s.outstanding == sum(left)
        rate = max(1.0, s.meter.avg.get(sched.config.initial_rate))
        assert s.sort_key == (-rate, s.id)
    if sched._total is not None and sched._now < sched._total_until:  # a cached rate sum
        cached_total = sched._total
        sched._total = None
        assert sched._total_rate() == cached_total
    if sched._order is not None:  # the cached pass order holds exactly the present, known sources
        assert sorted(id(s) for s in sched._order) == sorted(
            id(s) for s in sched._sources.values() if s.present and s.known
        )
    assert sched._partial_avail == partial
    assert sched._vmask == sum(1 << c for c in range(n) if sched._verified[c])
    assert sched._multi == sum(1 << c for c, r in sched._carriers.items() if len(r) > 1)
    stealable = 0  # by the definition: ahead of a request, not verified, carried once
    for req in sched._requests.values():
        for c in req.ahead():
            if not sched._verified[c] and len(sched._carriers.get(c, ())) <= 1:
                stealable |= 1 << c
    sched._steal_mask = None
    assert sched._stealable() == stealable
    cached = sched._steal_mask
    if cached is not None:  # a cached stealable mask must still be right
        sched._steal_mask = None
        assert sched._stealable() == cached
    if sched._quiet and not sched.done:  # a skipped pass would really have issued nothing
        for later in (sched._now, min(sched._now + 5.0, (sched._now + sched._quiet_until) / 2)):
            if later < sched._quiet_until:
                clone = copy.deepcopy(sched)
                clone._now = later
                out: list[Action] = []
                clone._schedule(out)
                assert not out
    for s in sched._sources.values():  # a remembered failed steal must still fail
        remembered = s.miss_epoch == sched._steal_epoch and s.miss_mask == s.mask
        if s.present and not s.requests and remembered:
            s.miss_epoch = -1
            assert sched._steal(s) is None


class Checked(Scheduler):
    """A scheduler that recounts its bookkeeping after each event."""

    def handle(self, event: Event, now: float) -> list[Action]:
        out = super().handle(event, now)
        check(self)
        return out


event_st = st.tuples(
    st.sampled_from(["have", "lacks", "bitfield", "add", "remove", "tick", "fail", "verify"]),
    st.integers(0, 2),
    st.integers(0, 9),
    st.binary(min_size=0, max_size=3),
)


@settings(max_examples=int(os.environ.get("WS_EXAMPLES", "40")), deadline=None)
@given(
    chunks=st.integers(1, 10),
    steps=st.lists(event_st, min_size=5, max_size=60),
    seed=st.integers(0, 99),
)
def test_bookkeeping_matches_a_recount(
    chunks: int, steps: list[tuple[str, int, int, bytes]], seed: int
) -> None:
    sched = Checked(size=chunks * CS, chunk_size=CS, seed=seed)
    t = 0.0
    for kind, who, chunk, bits in steps:
        t += 0.1
        src = f"p{who}"
        ev: Event
        if kind == "have":
            ev = Have(src, chunk)
        elif kind == "lacks":
            ev = Lacks(src, chunk)
        elif kind == "bitfield":
            ev = HaveBitfield(src, bits)
        elif kind == "add":
            ev = SourceAdded(src, "peer", complete=who == 0)
        elif kind == "remove":
            ev = SourceRemoved(src)
        elif kind == "verify":
            ev = ChunkVerified(chunk, (src,))
        elif kind == "fail" and sched.in_flight:
            req = sched.in_flight[chunk % len(sched.in_flight)]
            ev = RequestFailed(req.id, ("missing", "gone", "error")[who % 3])
        elif sched.in_flight:
            req = sched.in_flight[0]
            sched.handle(RequestStarted(req.id), t)
            ev = RequestDone(req.id)
        else:
            ev = Tick()
        sched.handle(ev, t)


def test_bookkeeping_in_a_full_download() -> None:
    srcs = [FakeSource("m", 2e6, 0.01, "mirror"), FakeSource("p", 1e6, 0.02, "peer")]
    cfg = SchedulerConfig(stall_timeout=0.5, base_backoff=0.1, max_backoff=1.0)
    sched = Checked(size=30 * CS - 7, chunk_size=CS, seed=3, config=cfg)
    run(sched, srcs, dt=0.01, limit=60)
    assert sched.done


# -- handle_all: the events of one instant, one decision --------------------------------


def _script(sched: Scheduler, batch: bool) -> list[Action]:
    """A small download where some events arrive together; returns every action."""
    out: list[Action] = []

    def feed(events: list[Event], now: float) -> None:
        if batch:
            out.extend(sched.handle_all(events, now))
        else:
            for event in events:
                out.extend(sched.handle(event, now))

    feed([SourceAdded("a"), SourceAdded("b", complete=False), HaveBitfield("b", b"\xf0")], 0.0)
    t = 0.0
    for _ in range(200):
        if sched.done:
            break
        t += 0.5
        running = sched.in_flight
        news: list[Event] = []
        for req in running:
            news += [RequestStarted(req.id), BytesReceived(req.id, req.length)]
            news += [ChunkVerified(c, (req.source,)) for c in req.chunks]
            news.append(RequestDone(req.id))
        feed([*news, Tick()], t)
    return out


def test_handle_all_of_one_event_is_handle() -> None:
    """Fed one event at a time, handle_all decides exactly as handle."""
    a = Checked(size=8 * CS, chunk_size=CS, seed=5)
    b = Scheduler(size=8 * CS, chunk_size=CS, seed=5)
    log_a: list[Action] = []
    log_b: list[Action] = []
    events: list[Event] = [SourceAdded("m", "mirror"), SourceAdded("p", complete=False)]
    events += [HaveBitfield("p", b"\x0f"), Have("p", 0), Tick()]
    for i, event in enumerate(events):
        log_a += a.handle(event, i * 0.1)
        log_b += b.handle_all([event], i * 0.1)
    for req in list(a.in_flight):
        for event in (RequestStarted(req.id), BytesReceived(req.id, req.length)):
            log_a += a.handle(event, 1.0)
            log_b += b.handle_all([event], 1.0)
    assert log_a == log_b and log_a


def test_batched_download_finishes_with_consistent_bookkeeping() -> None:
    sched = Checked(size=8 * CS, chunk_size=CS, seed=2)
    actions = _script(sched, batch=True)
    assert sched.done and actions[-1] == Finished()
    assert sched.handle_all([], 200.0) == []  # nothing to decide
    assert sched.handle_all([BytesReceived(999, 1)], 200.0) == []  # unknown request


def test_batched_and_single_downloads_both_finish() -> None:
    one = Checked(size=8 * CS, chunk_size=CS, seed=2)
    _script(one, batch=False)
    assert one.done


def test_progress_of_several_requests_fills_each_source() -> None:
    """A batch of bytes only (two sources progressing) fills just those sources."""
    sched = Checked(size=40 * CS, chunk_size=CS, seed=1)
    for name in ("a", "b"):
        sched.handle(SourceAdded(name, "mirror"), 0.0)
    first = {r.source: r for r in sched.in_flight}
    assert set(first) == {"a", "b"}
    sched.handle_all([RequestStarted(r.id) for r in first.values()], 0.05)
    news: list[Event] = [BytesReceived(r.id, CS // 2) for r in first.values()]
    actions = sched.handle_all(news, 0.5)
    assert all(isinstance(a, Request) and a.source in first for a in actions)


def test_combine_table() -> None:
    from peer.scheduler.core import _BYTES, _CALM, _DIRTY, _IGNORED, _TOUCHED, _combine

    assert _combine(_IGNORED, _CALM) == _CALM
    assert _combine(_CALM, _IGNORED) == _CALM
    assert _combine(_BYTES, _BYTES) == _BYTES
    assert _combine(_BYTES, _CALM) == _DIRTY
    assert _combine(_CALM, _TOUCHED) == _TOUCHED
    assert _combine(_TOUCHED, _TOUCHED) == _DIRTY
    assert _combine(_DIRTY, _TOUCHED) == _DIRTY
    assert _combine(_CALM, _CALM) == _CALM
