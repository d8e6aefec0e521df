"""A tiny fixed-step driver for scheduler tests: sources with a rate and a latency.

Not the project's simulator (that is ``peer.simulate``); just enough virtual
network to check the scheduler's decisions with events only. Each source's
rate is shared equally by its running requests; a request starts delivering
after the source's latency. ``corrupt`` sources send bad chunks, ``stall``
sources stop sending after ``stall_after`` bytes, ``dead`` sources fail every
request, ``holds`` restricts a peer to some chunks (it answers others 416).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from peer.scheduler import (
    Action,
    Ban,
    BytesReceived,
    Cancel,
    ChunkCorrupt,
    ChunkVerified,
    Finished,
    Request,
    RequestDone,
    RequestFailed,
    RequestStarted,
    Scheduler,
    SourceAdded,
    Tick,
)


@dataclass
class FakeSource:
    name: str
    rate: float
    latency: float = 0.01
    kind: str = "mirror"
    corrupt: bool = False
    stall_after: int | None = None
    dead: bool = False
    holds: set[int] | None = None
    sent: int = 0


@dataclass
class Running:
    req: Request
    started_at: float
    got: int = 0
    started: bool = False


@dataclass
class Outcome:
    time: float
    actions: list[Action] = field(default_factory=list)
    verified: set[int] = field(default_factory=set)
    bytes_by_source: dict[str, int] = field(default_factory=dict)
    requests: int = 0


def run(
    sched: Scheduler,
    sources: Iterable[FakeSource],
    *,
    dt: float = 0.01,
    limit: float = 120.0,
    add_events: bool = True,
) -> Outcome:
    srcs = {s.name: s for s in sources}
    out = Outcome(time=0.0)
    running: dict[int, Running] = {}
    now = 0.0

    def feed(actions: list[Action]) -> None:
        out.actions.extend(actions)
        for a in actions:
            if isinstance(a, Request):
                out.requests += 1
                running[a.id] = Running(a, now)
            elif isinstance(a, Cancel):
                running.pop(a.id, None)
            elif isinstance(a, Ban):
                for rid in [r for r, run_ in running.items() if run_.req.source == a.source]:
                    running.pop(rid)

    if add_events:
        for s in srcs.values():
            feed(sched.handle(SourceAdded(s.name, kind=s.kind), now))  # type: ignore[arg-type]
    steps = int(limit / dt)
    for _ in range(steps):
        if any(isinstance(a, Finished) for a in out.actions):
            break
        now += dt
        by_source: dict[str, list[Running]] = {}
        for r in list(running.values()):
            by_source.setdefault(r.req.source, []).append(r)
        for name, runs in by_source.items():
            src = srcs[name]
            share = src.rate * dt / len(runs)
            for r in runs:
                if r.req.id not in running:
                    continue
                if now - r.started_at < src.latency:
                    continue
                if src.dead:
                    running.pop(r.req.id)
                    feed(sched.handle(RequestFailed(r.req.id, "error", "refused"), now))
                    continue
                if src.holds is not None and not all(c in src.holds for c in r.req.chunks):
                    running.pop(r.req.id)
                    feed(sched.handle(RequestFailed(r.req.id, "missing", "416"), now))
                    continue
                if not r.started:
                    r.started = True
                    feed(sched.handle(RequestStarted(r.req.id), now))
                    if r.req.id not in running:
                        continue
                n = int(min(share, r.req.length - r.got))
                if src.stall_after is not None and src.sent + n > src.stall_after:
                    n = max(0, src.stall_after - src.sent)
                if n <= 0:
                    continue
                before = r.got
                r.got += n
                src.sent += n
                out.bytes_by_source[name] = out.bytes_by_source.get(name, 0) + n
                feed(sched.handle(BytesReceived(r.req.id, n), now))
                if r.req.id not in running:
                    continue
                # Chunks completed by these bytes.
                for c in r.req.chunks:
                    c_end = min((c + 1) * sched.chunk_size, sched.size) - r.req.start
                    if before < c_end <= r.got:
                        if src.corrupt:
                            feed(sched.handle(ChunkCorrupt(c, (name,)), now))
                        elif c not in out.verified:
                            out.verified.add(c)
                            feed(sched.handle(ChunkVerified(c, (name,)), now))
                        if r.req.id not in running:
                            break
                if r.req.id in running and r.got >= r.req.length:
                    running.pop(r.req.id)
                    feed(sched.handle(RequestDone(r.req.id), now))
        feed(sched.handle(Tick(), now))
    out.time = now
    return out
