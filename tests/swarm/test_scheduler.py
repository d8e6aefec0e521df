"""The scheduler driven by events only (no network, no clock)."""

from __future__ import annotations

import pytest

from peer.scheduler import (
    Ban,
    BytesReceived,
    Cancel,
    ChunkVerified,
    FallBackToMirrors,
    Finished,
    Have,
    HaveBitfield,
    Lacks,
    NeedMoreSources,
    Request,
    RequestDone,
    RequestFailed,
    RequestStarted,
    Scheduler,
    SchedulerConfig,
    SourceAdded,
    SourceRemoved,
    Tick,
)
from tests.swarm.fluid import FakeSource, run

MB = 1_000_000
CS = 256 * 1024


def requests(actions: list) -> list[Request]:
    return [a for a in actions if isinstance(a, Request)]


def bitfield(chunks: set[int], n: int) -> bytes:
    out = bytearray((n + 7) // 8)
    for c in chunks:
        out[c >> 3] |= 0x80 >> (c & 7)
    return bytes(out)


def test_single_mirror_coalesces_and_finishes() -> None:
    sched = Scheduler(size=64 * CS + 1000, chunk_size=CS, seed=1)
    out = run(sched, [FakeSource("m", 20 * MB)])
    assert sched.done and len(out.verified) == 65
    assert sum(isinstance(a, Finished) for a in out.actions) == 1
    # One source streams its region: far fewer requests than chunks.
    assert out.requests <= 10
    reqs = requests(out.actions)
    assert reqs[-1].end <= sched.size
    assert any(r.last == 64 and r.end == sched.size for r in reqs)


def test_three_sources_reach_sum_of_rates() -> None:
    size = 256 * 1024 * 1024
    sched = Scheduler(size=size, chunk_size=CS, seed=3)
    rates = [25 * MB, 12.5 * MB, 6.25 * MB]
    lats = [0.01, 0.03, 0.06]
    srcs = [FakeSource(n, r, lat) for n, r, lat in zip("abc", rates, lats, strict=True)]
    out = run(sched, srcs, dt=0.005)
    efficiency = size / out.time / sum(rates)
    assert efficiency > 0.93, efficiency
    # Bytes split roughly by rate; duplicates (end-game) under 1%.
    total = sum(out.bytes_by_source.values())
    assert total < size * 1.01
    assert out.bytes_by_source["a"] > out.bytes_by_source["b"] > out.bytes_by_source["c"]
    assert out.requests < size // CS // 8


def test_same_seed_same_actions_and_seed_matters() -> None:
    def trace(seed: int) -> list:
        # Four equal free runs (resume left chunks 10, 21, 32): the seed breaks the tie.
        sched = Scheduler(size=43 * CS, chunk_size=CS, seed=seed, verified={10, 21, 32})
        srcs = [FakeSource("a", 10 * MB), FakeSource("b", 5 * MB)]
        return run(sched, srcs).actions

    assert trace(5) == trace(5)
    firsts = {requests(trace(s))[0].first for s in range(6)}
    assert len(firsts) > 1


def test_rarest_first_after_fast_start() -> None:
    n = 16
    cfg = SchedulerConfig(fast_start_chunks=0, initial_rate=1)  # one chunk per request
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0, config=cfg)
    sched.handle(SourceAdded("p1", complete=False), 0)
    sched.handle(SourceAdded("p2", complete=False), 0)
    sched.handle(HaveBitfield("p1", bitfield(set(range(n)) - {9}, n)), 0)
    acts = sched.handle(HaveBitfield("p2", bitfield(set(range(n)), n)), 0)
    # Chunk 9 is held by p2 alone: the rarest, so p2 asks for it first.
    p2 = [r for r in requests(acts) if r.source == "p2"]
    assert p2 and p2[0].first == 9


@pytest.mark.parametrize("fast", [True, False])
def test_fast_start_prefers_common_chunks(fast: bool) -> None:
    n = 16
    cfg = SchedulerConfig(fast_start_chunks=4 if fast else 0, initial_rate=1)
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0, config=cfg)
    sched.handle(SourceAdded("p1", complete=False), 0)
    (r1,) = requests(sched.handle(HaveBitfield("p1", bitfield({3}, n)), 0))
    assert r1.first == 3
    # p1 is choked for a while: chunk 3 is free again and held by two sources.
    sched.handle(RequestFailed(r1.id, "busy", retry_after=100), 0)
    (rm,) = requests(sched.handle(SourceAdded("m", kind="mirror"), 0))
    # Fast start: the common chunk (a quick first success); otherwise the rarest.
    assert (rm.first == 3) is fast


def test_partial_peer_waits_for_bitfield_and_have() -> None:
    n = 8
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0)
    assert requests(sched.handle(SourceAdded("p", complete=False), 0)) == []
    acts = sched.handle(Have("p", 5), 0)
    assert [(r.first, r.last) for r in requests(acts)] == [(5, 5)]
    acts = sched.handle(Lacks("p", 6), 0)
    assert requests(acts) == []


def test_corrupt_source_is_banned_good_chunks_kept() -> None:
    sched = Scheduler(size=100 * CS, chunk_size=CS, seed=2)
    good = FakeSource("good", 10 * MB)
    bad = FakeSource("bad", 10 * MB, corrupt=True)
    out = run(sched, [good, bad])
    assert sched.done and len(out.verified) == 100
    bans = [a for a in out.actions if isinstance(a, Ban)]
    assert [b.source for b in bans] == ["bad"]
    assert "corrupt" in bans[0].reason
    stats = {s.source: s for s in sched.stats()}
    assert stats["bad"].banned and stats["good"].banned is None
    # Once banned, never asked again.
    ban_at = out.actions.index(bans[0])
    assert all(r.source != "bad" for r in requests(out.actions[ban_at:]))
    # A banned source cannot come back.
    assert requests(sched.handle(SourceAdded("bad", kind="mirror"), 99)) == []


def test_stalled_request_is_cancelled_and_reissued() -> None:
    sched = Scheduler(size=40 * CS, chunk_size=CS, seed=4)
    stall = FakeSource("stall", 10 * MB, stall_after=3 * CS + 17)
    out = run(sched, [stall, FakeSource("ok", 2 * MB)])
    assert sched.done
    cancels = [a for a in out.actions if isinstance(a, Cancel) and a.reason == "stalled"]
    assert cancels and all(c.source == "stall" for c in cancels)
    stats = {s.source: s for s in sched.stats()}
    assert stats["stall"].failures >= 1 and stats["stall"].banned is None


def test_dead_source_backs_off_exponentially() -> None:
    sched = Scheduler(size=30 * CS, chunk_size=CS, seed=0)
    out = run(sched, [FakeSource("dead", 10 * MB, dead=True), FakeSource("ok", 3 * MB)])
    assert sched.done
    dead_reqs = [r for r in requests(out.actions) if r.source == "dead"]
    # 0.5, 1, 2 s back-offs in a ~2.6 s download: a handful of attempts, not hundreds.
    assert 1 <= len(dead_reqs) <= 4


def test_missing_answer_marks_chunks_not_held_without_penalty() -> None:
    sched = Scheduler(size=20 * CS, chunk_size=CS, seed=0)
    half = FakeSource("half", 20 * MB, kind="peer", holds=set(range(10)))
    out = run(sched, [half, FakeSource("m", 2 * MB)])
    assert sched.done
    stats = {s.source: s for s in sched.stats()}
    assert stats["half"].failures == 0
    assert out.bytes_by_source.get("half", 0) > 0


def test_slow_source_costs_more_than_it_brings_is_benched() -> None:
    size = 200 * CS
    fast = FakeSource("fast", 20 * MB)
    slow = FakeSource("slow", 0.05 * MB)
    sched = Scheduler(size=size, chunk_size=CS, seed=1)
    out = run(sched, [fast, slow], dt=0.005)
    alone = size / (20 * MB)
    # Without benching / stealing, the slow mirror's share would take many seconds.
    assert out.time < alone * 1.35, (out.time, alone)


def test_endgame_duplicates_last_chunk_and_cancels_loser() -> None:
    n = 4
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0, config=SchedulerConfig(initial_rate=1))
    sched.handle(SourceAdded("slow", kind="mirror"), 0)
    sched.handle(SourceAdded("fast", kind="mirror"), 0)
    first = sched.in_flight
    assert len(first) == 2
    slow_req = next(r for r in first if r.source == "slow")
    fast_req = next(r for r in first if r.source == "fast")
    # Teach rates: fast streams at 10 MB/s, slow at 100 kB/s.
    sched.handle(RequestStarted(fast_req.id), 0.01)
    sched.handle(RequestStarted(slow_req.id), 0.01)
    t = 0.01
    for _ in range(5):
        t += 0.05
        sched.handle(BytesReceived(slow_req.id, 5000), t)
    sched.handle(BytesReceived(fast_req.id, CS), 0.05)
    acts = sched.handle(ChunkVerified(fast_req.first, ("fast",)), 0.05)
    sched.handle(RequestDone(fast_req.id), 0.05)
    # Fast is idle and the other chunks are either claimed or free; run fast until only
    # the slow request's chunk is left, then it must steal it.
    for _ in range(10):
        mine = [r for r in sched.in_flight if r.source == "fast"]
        if not mine:
            acts = sched.handle(Tick(), t)
            mine = [r for r in sched.in_flight if r.source == "fast"]
            if not mine:
                break
        r = mine[0]
        t += 0.03
        sched.handle(BytesReceived(r.id, r.length), t)
        for c in r.chunks:
            acts = sched.handle(ChunkVerified(c, ("fast",)), t)
        if sched.done:
            break
        acts = sched.handle(RequestDone(r.id), t)
    assert sched.done
    assert any(isinstance(a, Finished) for a in acts)
    assert slow_req.id not in [r.id for r in sched.in_flight]


def test_cancel_when_remaining_chunks_verified_elsewhere() -> None:
    sched = Scheduler(size=8 * CS, chunk_size=CS, seed=0, config=SchedulerConfig(initial_rate=1))
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    sched.handle(RequestStarted(ra.id), 0.01)
    sched.handle(BytesReceived(ra.id, 10), 0.02)
    acts = sched.handle(ChunkVerified(ra.first, ("b",)), 0.03)
    cancels = [a for a in acts if isinstance(a, Cancel)]
    assert [c.id for c in cancels] == [ra.id] and cancels[0].reason == "verified elsewhere"
    # Events about the forgotten request are ignored.
    assert sched.handle(BytesReceived(ra.id, 10), 0.04) == []
    assert [a for a in sched.handle(RequestDone(ra.id), 0.04) if isinstance(a, Cancel)] == []


def test_resume_never_requests_verified_chunks() -> None:
    have = set(range(0, 50, 2))
    sched = Scheduler(size=50 * CS, chunk_size=CS, seed=0, verified=have)
    assert sched.missing == 25
    out = run(sched, [FakeSource("m", 10 * MB)])
    asked = {c for r in requests(out.actions) for c in r.chunks}
    assert not asked & have and sched.done


def test_empty_artifact_finishes_at_once() -> None:
    sched = Scheduler(size=0, chunk_size=CS)
    assert sched.done and sched.chunk_count == 0
    assert sched.handle(Tick(), 0) == [Finished()]
    assert sched.handle(Tick(), 1) == []


def test_bad_geometry_rejected() -> None:
    with pytest.raises(ValueError):
        Scheduler(size=10, chunk_size=0)


def test_source_removed_requeues() -> None:
    sched = Scheduler(size=10 * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    acts = sched.handle(SourceRemoved("a"), 0.1)
    assert [a for a in acts if isinstance(a, Cancel)] == [Cancel(ra.id, "a", "source removed")]
    assert sched.in_flight == [] and sched.stuck
    acts = sched.handle(SourceAdded("b", kind="mirror"), 0.2)
    assert requests(acts)[0].first == ra.first or requests(acts)
    # Re-adding a removed source works.
    sched.handle(SourceRemoved("b"), 0.3)
    assert requests(sched.handle(SourceAdded("a", kind="mirror"), 0.4))


def test_busy_waits_retry_after_without_penalty() -> None:
    sched = Scheduler(size=10 * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    acts = sched.handle(RequestFailed(ra.id, "busy", "503", retry_after=2.0), 0.1)
    assert requests(acts) == []
    assert sched.next_wakeup() == pytest.approx(2.1)
    assert requests(sched.handle(Tick(), 1.0)) == []
    assert requests(sched.handle(Tick(), 2.2))
    assert sched.stats()[0].failures == 0


def test_short_body_counts_as_failure() -> None:
    sched = Scheduler(size=10 * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    sched.handle(BytesReceived(ra.id, 100), 0.1)
    sched.handle(RequestDone(ra.id), 0.2)
    assert sched.stats()[0].failures == 1
    assert sched.in_flight == []  # backing off
    assert requests(sched.handle(Tick(), 1.0))


def test_advice_when_peers_cannot_finish() -> None:
    n = 8
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("p", complete=False), 0)
    sched.handle(HaveBitfield("p", bitfield({0, 1}, n)), 0)
    acts = sched.handle(Tick(), 0.1)
    need = [a for a in acts if isinstance(a, NeedMoreSources)]
    assert need and need[0].missing == 6
    assert any(isinstance(a, FallBackToMirrors) for a in acts)
    # Rate-limited.
    assert not any(isinstance(a, NeedMoreSources) for a in sched.handle(Tick(), 0.2))
    assert any(isinstance(a, NeedMoreSources) for a in sched.handle(Tick(), 6.0))
    # With a mirror, no fallback advice.
    sched.handle(SourceAdded("m", kind="mirror"), 12)
    acts = sched.handle(Tick(), 12.0)
    assert not any(isinstance(a, FallBackToMirrors | NeedMoreSources) for a in acts)


def test_next_wakeup_and_stats() -> None:
    sched = Scheduler(size=4 * CS, chunk_size=CS, seed=0)
    assert sched.next_wakeup() == 0.0  # no source at all: advice is due now
    assert any(isinstance(a, NeedMoreSources) for a in sched.handle(Tick(), 0))
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    wake = sched.next_wakeup()
    assert wake is not None and 0 < wake <= SchedulerConfig().stall_timeout
    (st,) = sched.stats()
    assert st.kind == "mirror" and st.requests_in_flight == 1 and st.rate is None
    assert not sched.stuck and not sched.is_verified(0)


def test_bitfield_replaces_holdings() -> None:
    n = 10
    sched = Scheduler(size=n * CS, chunk_size=CS, seed=0, config=SchedulerConfig(initial_rate=1))
    sched.handle(SourceAdded("p"), 0)
    for r in sched.in_flight:
        sched.handle(RequestDone(r.id), 0)  # short: fails, backs off
    sched.handle(HaveBitfield("p", bitfield({7}, n)), 0)
    acts = sched.handle(Tick(), 5.0)
    assert [(r.first, r.last) for r in requests(acts)] == [(7, 7)]
    # A full bitfield makes it complete again.
    sched.handle(HaveBitfield("p", bitfield(set(range(n)), n)), 5.0)
    assert not sched.stuck


def test_gone_source_holds_nothing() -> None:
    sched = Scheduler(size=10 * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    acts = sched.handle(RequestFailed(ra.id, "gone", "HTTP 404"), 0.1)
    assert requests(acts) == [] and sched.stuck
    assert sched.stats()[0].failures == 0
    # It may come to hold chunks later.
    assert requests(sched.handle(Have("a", 4), 0.2))


def test_full_body_without_verification_is_not_retried_at_once() -> None:
    # A driver that loses a chunk's outcome (or a server whose bytes never verify without
    # being reported corrupt) must not make the scheduler re-fetch the range in a hot loop.
    sched = Scheduler(size=4 * CS, chunk_size=CS, seed=0)
    sched.handle(SourceAdded("a", kind="mirror"), 0)
    (ra,) = sched.in_flight
    sched.handle(BytesReceived(ra.id, ra.length), 0.1)
    acts = sched.handle(RequestDone(ra.id), 0.1)
    assert requests(acts) == [] and sched.stats()[0].failures == 1
    assert requests(sched.handle(Tick(), 1.0))


def test_source_measured_at_zero_rate_does_not_break_endgame() -> None:
    # Found by hypothesis: a peer that stalls at once is measured at 0 B/s.
    sched = Scheduler(size=1 * CS, chunk_size=CS, seed=0, config=SchedulerConfig(stall_timeout=0.5))
    out = run(
        sched, [FakeSource("h", 2 * MB), FakeSource("z", 0.2 * MB, 0.0, "peer", stall_after=0)]
    )
    assert sched.done and out.verified == {0}
