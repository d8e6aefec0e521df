"""Property tests: random swarms of good and bad sources, driven by events only."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from peer.scheduler import Ban, Finished, Request, Scheduler, SchedulerConfig
from tests.swarm.fluid import FakeSource, run

CS = 64 * 1024

source_st = st.builds(
    FakeSource,
    name=st.just(""),
    rate=st.sampled_from([0.2e6, 1e6, 4e6]),
    latency=st.sampled_from([0.0, 0.02, 0.1]),
    kind=st.sampled_from(["peer", "mirror"]),
    corrupt=st.booleans(),
    stall_after=st.one_of(st.none(), st.integers(0, 20 * CS)),
    dead=st.booleans(),
)


@settings(max_examples=int(os.environ.get("WS_EXAMPLES", "40")), deadline=None)
@given(
    chunks=st.integers(1, 60),
    tail=st.integers(0, CS - 1),
    others=st.lists(source_st, max_size=4),
    seed=st.integers(0, 2**32),
    have=st.sets(st.integers(0, 59), max_size=20),
)
def test_random_swarm_completes_and_keeps_invariants(
    chunks: int, tail: int, others: list[FakeSource], seed: int, have: set[int]
) -> None:
    size = max(1, chunks * CS - tail)
    n = -(-size // CS)
    have = {c for c in have if c < n}
    honest = FakeSource("honest", 2e6, 0.01, "mirror")
    srcs = [honest]
    for i, s in enumerate(others):
        s.name = f"s{i}"
        srcs.append(s)
    cfg = SchedulerConfig(stall_timeout=0.5, base_backoff=0.1, max_backoff=1.0)
    sched = Scheduler(size=size, chunk_size=CS, seed=seed, verified=have, config=cfg)
    out = run(sched, srcs, dt=0.01, limit=60)
    assert sched.done, (out.time, sched.missing)
    assert sum(isinstance(a, Finished) for a in out.actions) == 1
    banned: set[str] = set()
    for a in out.actions:
        if isinstance(a, Ban):
            banned.add(a.source)
        elif isinstance(a, Request):
            assert a.source not in banned
            assert 0 <= a.start < a.end <= size and a.first <= a.last < n
            assert a.start == a.first * CS and a.end == min((a.last + 1) * CS, size)
            assert not set(a.chunks) & have
    # Only sources that sent corrupt data are banned; the honest one never is.
    assert banned <= {s.name for s in srcs if s.corrupt}
    assert "honest" not in banned
    assert set(range(n)) - have == out.verified
