"""The simulated swarm: hosts, their roles, and the drivers of their schedulers.

Every downloader owns one real :class:`peer.scheduler.Scheduler`. The simulator
is its driver, exactly as the asyncio engine is: it turns each ``Request``
action into a connection attempt and then a flow in the :mod:`network` model,
and feeds back what a real driver would see (``RequestStarted``,
``BytesReceived``, ``ChunkVerified``/``ChunkCorrupt``, ``RequestDone``,
``RequestFailed``, ``Have``, ``SourceRemoved``, periodic ``Tick``). Chunk
contents are not materialised: a chunk is good iff its sender is honest, and
"verification" compares that with the manifest, as hashing would.

Roles: ``leecher`` (downloads, then seeds until it leaves), ``seed`` (the
origin's peer: holds everything), ``mirror`` (plain HTTP, holds everything,
never downloads; also origin), ``malicious`` (claims every chunk, serves
corrupt bytes) and ``staller`` (claims every chunk, accepts requests, then
sends nothing). A host that is not ``reachable`` (NAT, firewall) can download
but nobody can connect to it, so in an HTTP swarm it uploads nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from peer.scheduler import Scheduler
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
from peer.scheduler.events import (
    BytesReceived,
    ChunkCorrupt,
    ChunkVerified,
    Event,
    Have,
    HaveBitfield,
    RequestDone,
    RequestFailed,
    RequestStarted,
    SourceAdded,
    SourceRemoved,
    Tick,
)

from .loop import EventLoop, SimulationError, Timer
from .network import INF, Flow, Network
from .upload import FairShare, SlotLimit, UploadPolicy

ROLES = ("leecher", "seed", "mirror", "malicious", "staller")
ORIGIN_ROLES = ("seed", "mirror")


@dataclass
class NodeSpec:
    """One host of a scenario. Capacities in bytes/s, times in seconds."""

    name: str
    role: str = "leecher"
    up: float = 1e6
    down: float = 1e7
    latency: float = 0.01
    reachable: bool = True
    join: float = 0.0
    #: Seconds a leecher stays (seeding) after completing; ``inf``: until the end.
    linger: float = INF
    #: Seconds after joining at which a leecher gives up if not complete (churn).
    abort_after: float | None = None
    tier: str = ""


@dataclass
class SimConfig:
    """How the simulator drives the swarm (not what the swarm is)."""

    #: Sources each joining downloader learns (peer exchange gives it this many).
    neighbors: int = 8
    #: Upper bound on sources per downloader (learning more stops there).
    max_sources: int = 16
    #: A downloader's driver wakes this often: reports progress, then ``Tick``.
    #: Below the scheduler's stall time-out (3 s), so a slow transfer is not taken for a stall.
    tick_interval: float = 2.0
    #: Mid-chunk progress is reported at most this often per request (chunk ends always are).
    progress_interval: float = 1.5
    #: A connection to an unreachable or partitioned host fails after this long.
    connect_timeout: float = 3.0
    #: Mirrors are sources from the start; otherwise only after ``FallBackToMirrors``.
    mirrors_at_start: bool = True
    #: Availability and origin share are sampled this often for the time series.
    sample_interval: float = 5.0
    #: Give up after this much virtual time.
    max_time: float = 36_000.0
    #: Upload admission per role: a factory called once per uploading host.
    upload_policy: Callable[[NodeSpec], UploadPolicy] = field(
        default=lambda spec: FairShare() if spec.role == "mirror" else SlotLimit(4, 3.0)
    )
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)


class _Req:
    """One request in the simulated world (client side and server side at once)."""

    __slots__ = (
        "action",
        "admitted",
        "alive",
        "chunk",
        "client",
        "flow",
        "partitioned",
        "reported",
        "reported_at",
        "seg_end",
        "server",
        "timer",
    )

    def __init__(self, action: Request, client: Node, server: Node | None, now: float) -> None:
        self.action = action
        self.client = client
        self.server = server
        self.flow: Flow | None = None
        self.timer: Timer | None = None
        self.admitted = False
        self.alive = True
        self.partitioned = False
        self.chunk = action.first
        self.seg_end = 0  # bytes from the request start to the end of the current chunk
        self.reported = 0  # bytes already reported with BytesReceived
        self.reported_at = now


class Node:
    """A host in the simulation and, if it downloads, its scheduler."""

    __slots__ = (
        "bad_chunks",
        "corrupt_sent",
        "done_at",
        "down_bytes",
        "has",
        "held",
        "joined_at",
        "left",
        "left_at",
        "name",
        "offline",
        "policy",
        "present",
        "reqs",
        "role",
        "sched",
        "serving",
        "sources",
        "spec",
        "up_bytes",
        "wake",
        "watchers",
    )

    def __init__(self, spec: NodeSpec, chunks: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.present = False
        self.left = False
        self.offline = False  # a mirror that is down
        complete = spec.role != "leecher"
        self.has = bytearray(b"\x01" * chunks if complete else bytes(chunks))
        self.held = chunks if complete else 0
        self.sched: Scheduler | None = None
        self.sources: dict[str, None] = {}
        self.watchers: dict[str, None] = {}
        self.reqs: dict[int, _Req] = {}
        self.serving: dict[_Req, None] = {}
        self.policy: UploadPolicy = FairShare()
        self.wake: Timer | None = None
        self.joined_at = 0.0
        self.done_at: float | None = None
        self.left_at: float | None = None
        self.up_bytes = 0.0
        self.down_bytes = 0.0
        self.corrupt_sent = 0
        #: Chunks whose only received copy was corrupt (an audit: never verified).
        self.bad_chunks: set[int] = set()

    @property
    def downloading(self) -> bool:
        """Present, a leecher, not finished."""
        return self.present and self.sched is not None and self.done_at is None

    @property
    def complete(self) -> bool:
        """Claims (or holds) every chunk."""
        return self.held == len(self.has)


class Swarm:
    """A simulated swarm for one artifact of ``size`` bytes in ``chunk_size`` chunks."""

    def __init__(
        self, size: int, chunk_size: int, seed: int = 0, config: SimConfig | None = None
    ) -> None:
        if size <= 0 or chunk_size <= 0:
            raise SimulationError("size and chunk_size must be positive")
        self.size = size
        self.chunk_size = chunk_size
        self.chunks = math.ceil(size / chunk_size)
        self.config = config or SimConfig()
        self.loop = EventLoop(seed)
        self.rng = self.loop.rng
        self.net = Network(self.loop)
        self.nodes: dict[str, Node] = {}
        self._origins: list[Node] = []  # seeds and mirrors, in the order added
        # Present reachable peers anyone may learn about (sampling pool, O(1) removal).
        self._pool: list[str] = []
        self._pool_at: dict[str, int] = {}
        self._side: dict[str, int] | None = None
        self._pending_joins = 0
        self._active_downloaders = 0
        # Copies of each chunk on present peers (seeds and leechers that hold it).
        self.copies = [0] * self.chunks
        # Outcomes.
        self.bytes_by_role: dict[str, float] = {r: 0.0 for r in ROLES}
        self.corrupt_received = 0
        self.bans: dict[tuple[str, str], str] = {}
        self.corrupt_pairs: set[tuple[str, str]] = set()
        self.wasted_bytes = 0.0
        self.failed_requests = 0
        self.busy_answers = 0
        self.scheduler_events = 0
        self._event_types: dict[type, int] = {}
        self.samples: list[dict[str, float]] = []
        self._started = False

    @property
    def event_counts(self) -> dict[str, int]:
        """Scheduler events fed so far, by event type name."""
        return {t.__name__: n for t, n in self._event_types.items()}

    # ---- building --------------------------------------------------------------------

    def add(self, spec: NodeSpec) -> Node:
        """Add a host; it joins at ``spec.join``."""
        if spec.role not in ROLES:
            raise SimulationError(f"unknown role {spec.role!r}")
        if spec.name in self.nodes:
            raise SimulationError(f"duplicate host {spec.name!r}")
        node = Node(spec, self.chunks)
        self.nodes[spec.name] = node
        if spec.role in ORIGIN_ROLES:
            self._origins.append(node)
        self.net.add_host(spec.name, spec.up, spec.down)
        node.policy = self.config.upload_policy(spec)
        self._pending_joins += 1
        self.loop.call_at(spec.join, self._join, node)
        return node

    def at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` at virtual time ``when`` (faults use this)."""
        self.loop.call_at(when, callback, *args)

    # ---- running ---------------------------------------------------------------------

    def run(self) -> float:
        """Run until every downloader finished or left (or ``max_time``); returns the end time."""
        if not self._started:
            self._started = True
            self.loop.call_at(0.0, self._sample)
        return self.loop.run(until=self.config.max_time)

    def _check_end(self) -> None:
        if self._pending_joins == 0 and self._active_downloaders == 0:
            self._sample_now()
            self.loop.stop()

    def _sample(self) -> None:
        self._sample_now()
        self.loop.call_later(self.config.sample_interval, self._sample)

    def _sample_now(self) -> None:
        total = sum(self.bytes_by_role.values())
        origin = self.bytes_by_role["seed"] + self.bytes_by_role["mirror"]
        done = sum(1 for n in self.nodes.values() if n.role == "leecher" and n.done_at is not None)
        self.samples.append(
            {
                "t": self.loop.now,
                "completed": done,
                "downloading": self._active_downloaders,
                "origin_share": origin / total if total else 0.0,
                "min_copies": min(self.copies) if self.copies else 0,
                "mean_copies": sum(self.copies) / len(self.copies) if self.copies else 0.0,
            }
        )

    # ---- membership ------------------------------------------------------------------

    def _join(self, node: Node) -> None:
        self._pending_joins -= 1
        node.present = True
        node.joined_at = self.loop.now
        spec = node.spec
        if node.role in ("seed", "leecher"):
            for c in range(self.chunks):
                if node.has[c]:
                    self.copies[c] += 1
        if node.role == "leecher":
            node.sched = Scheduler(
                size=self.size,
                chunk_size=self.chunk_size,
                seed=self.rng.getrandbits(32),
                config=self.config.scheduler,
            )
            self._active_downloaders += 1
            # What it learns on joining reaches its scheduler as one batch.
            news: list[Event] = []
            for other in self._origins:
                if other.present and (other.role == "seed" or self.config.mirrors_at_start):
                    self._connect(node, other, news)
            k = min(self.config.neighbors, len(self._pool))
            for name in self.rng.sample(self._pool, k):
                other = self.nodes[name]
                self._connect(node, other, news)
                if other.downloading and node.spec.reachable:
                    self._connect(other, node)
            if spec.abort_after is not None:
                self.loop.call_later(spec.abort_after, self._abort, node)
            node.wake = self.loop.call_later(
                self.rng.uniform(0, self.config.tick_interval), self._wake, node
            )
            news.append(Tick())
            self._feed_all(node, news)
        if spec.reachable and node.role not in ("mirror", "seed"):
            self._pool_at[node.name] = len(self._pool)
            self._pool.append(node.name)
        self._check_end()

    def _connect(self, client: Node, server: Node, batch: list[Event] | None = None) -> None:
        """``client`` learns ``server`` as a source (and tells it what it holds). The
        events go to ``batch`` if given (the caller feeds them), else straight in."""
        if server.name in client.sources or client.sched is None:
            return
        if len(client.sources) >= self.config.max_sources and server.role not in ORIGIN_ROLES:
            return
        client.sources[server.name] = None
        server.watchers[client.name] = None
        events: list[Event]
        if server.role == "mirror":
            events = [SourceAdded(server.name, "mirror")]
        elif server.complete:
            events = [SourceAdded(server.name, "peer", complete=True)]
        else:
            events = [
                SourceAdded(server.name, "peer", complete=False),
                HaveBitfield(server.name, self._bitfield(server)),
            ]
        if batch is not None:
            batch.extend(events)
        else:
            for event in events:
                self._feed(client, event)

    def _bitfield(self, node: Node) -> bytes:
        bits = bytearray((self.chunks + 7) // 8)
        has = node.has
        for c in range(len(has)):  # not enumerate(): mypyc cannot iterate a bytearray
            if has[c]:
                bits[c >> 3] |= 0x80 >> (c & 7)
        return bytes(bits)

    def _abort(self, node: Node) -> None:
        if node.downloading:
            self.leave(node.name)

    def leave(self, name: str) -> None:
        """Host ``name`` leaves: its transfers break, its watchers forget it."""
        node = self.nodes[name]
        if not node.present:
            return
        node.present = False
        node.left = True
        node.left_at = self.loop.now
        if node.wake is not None:
            node.wake.cancel()
            node.wake = None
        if node.downloading:
            self._active_downloaders -= 1
        for req in list(node.reqs.values()):
            self._close(req)
        node.reqs.clear()
        for req in list(node.serving):
            self._fail(req, "error", "connection reset")
        if name in self._pool_at:
            i = self._pool_at.pop(name)
            last = self._pool.pop()
            if last != name:
                self._pool[i] = last
                self._pool_at[last] = i
        if node.role in ("seed", "leecher"):
            for c in range(self.chunks):
                if node.has[c]:
                    self.copies[c] -= 1
        for w in list(node.watchers):
            other = self.nodes[w]
            other.sources.pop(name, None)
            if other.downloading:
                self._feed(other, SourceRemoved(name))
        node.watchers.clear()
        for s in node.sources:
            self.nodes[s].watchers.pop(name, None)
        self._check_end()

    # ---- the scheduler boundary -------------------------------------------------------

    def _feed(self, node: Node, event: Event) -> None:
        sched = node.sched
        if sched is None or not node.present:
            return
        self.scheduler_events += 1
        counts = self._event_types
        k = type(event)
        counts[k] = counts.get(k, 0) + 1
        self._act(node, sched.handle(event, self.loop.now))

    def _feed_all(self, node: Node, events: list[Event]) -> None:
        """Feed the events of one instant together (one decision), as an engine that
        drains its queue does."""
        sched = node.sched
        if sched is None or not node.present or not events:
            return
        self.scheduler_events += len(events)
        counts = self._event_types
        for event in events:
            k = type(event)
            counts[k] = counts.get(k, 0) + 1
        self._act(node, sched.handle_all(events, self.loop.now))

    def _act(self, node: Node, actions: list[Action]) -> None:
        """Carry out what ``node``'s scheduler decided."""
        for action in actions:
            if isinstance(action, Request):
                self._request(node, action)
            elif isinstance(action, Cancel):
                req = node.reqs.pop(action.id, None)
                if req is not None:
                    self._close(req)
            elif isinstance(action, Ban):
                self.bans[(node.name, action.source)] = action.reason
            elif isinstance(action, Finished):
                self._finished(node)
            elif isinstance(action, FallBackToMirrors):
                for other in self._origins:
                    if other.role == "mirror" and other.present:
                        self._connect(node, other)
            elif isinstance(action, NeedMoreSources):
                self._more_sources(node)

    def _more_sources(self, node: Node) -> None:
        want = max(1, self.config.neighbors // 2)
        candidates = [n for n in self._pool if n != node.name and n not in node.sources]
        for name in self.rng.sample(candidates, min(want, len(candidates))):
            self._connect(node, self.nodes[name])

    def _finished(self, node: Node) -> None:
        if node.done_at is not None:
            return
        node.done_at = self.loop.now
        self._active_downloaders -= 1
        if node.wake is not None:
            node.wake.cancel()
            node.wake = None
        if node.spec.linger != INF:
            self.loop.call_later(node.spec.linger, self.leave, node.name)
        self._check_end()

    def _wake(self, node: Node) -> None:
        node.wake = None
        if not node.downloading:
            return
        now = self.loop.now
        every = self.config.progress_interval
        news: list[Event] = []  # progress reports, then Tick: one batch
        for req in node.reqs.values():
            flow = req.flow
            if flow is None or not flow.alive or now - req.reported_at < every:
                continue
            moved = min(int(flow.progress(now)), req.seg_end - 1)
            if moved > req.reported:
                n = moved - req.reported
                req.reported = moved
                req.reported_at = now
                self._account(req, n)
                news.append(BytesReceived(req.action.id, n))
        news.append(Tick())
        self._feed_all(node, news)
        if node.downloading:
            node.wake = self.loop.call_later(self.config.tick_interval, self._wake, node)

    # ---- requests and flows -----------------------------------------------------------

    def _rtt(self, a: Node, b: Node) -> float:
        return 2.0 * (a.spec.latency + b.spec.latency)

    def partitioned(self, a: str, b: str) -> bool:
        """``a`` and ``b`` are on different sides of an active partition."""
        side = self._side
        return side is not None and side.get(a, 0) != side.get(b, 0)

    def _request(self, client: Node, action: Request) -> None:
        server = self.nodes.get(action.source)
        req = _Req(action, client, server, self.loop.now)
        client.reqs[action.id] = req
        if server is None:
            self._fail_later(req, 0.0, "error", "unknown host")
            return
        rtt = self._rtt(client, server)
        if not server.present or server.offline:
            self._fail_later(req, rtt, "error", "connection refused")
        elif not server.spec.reachable or self.partitioned(client.name, server.name):
            self._fail_later(req, self.config.connect_timeout, "error", "connect timeout")
        elif 0 in server.has[action.first : action.last + 1]:
            self._fail_later(req, rtt, "missing", "416")
        else:
            retry = server.policy.admit(client.name, self.loop.now)
            if retry is not None:
                self.busy_answers += 1
                self._fail_later(req, rtt, "busy", "503", retry)
                return
            req.admitted = True
            server.serving[req] = None
            req.timer = self.loop.call_later(rtt, self._begin, req)

    def _fail_later(
        self, req: _Req, delay: float, kind: str, reason: str, retry: float | None = None
    ) -> None:
        req.timer = self.loop.call_later(delay, self._fail, req, kind, reason, retry)

    def _fail(self, req: _Req, kind: str, reason: str, retry: float | None = None) -> None:
        if not req.alive:
            return
        client = req.client
        client.reqs.pop(req.action.id, None)
        self._close(req)
        self.failed_requests += 1
        self._feed(client, RequestFailed(req.action.id, kind, reason, retry))  # type: ignore[arg-type]

    def _close(self, req: _Req) -> None:
        """End a request on both sides (no event to the client's scheduler)."""
        if not req.alive:
            return
        req.alive = False
        if req.timer is not None:
            req.timer.cancel()
            req.timer = None
        if req.flow is not None:
            moved = self.net.stop(req.flow)
            if moved > req.reported:
                self._account(req, moved - req.reported)
            # Bytes of the chunk cut short are wasted, whether reported yet or not.
            chunk_start = req.seg_end - self._chunk_len(req.chunk)
            if chunk_start < moved < req.seg_end - 0.5:  # not float noise at a chunk end
                self.wasted_bytes += moved - chunk_start
        server = req.server
        if server is not None and req.admitted:
            server.serving.pop(req, None)
            server.policy.release(req.client.name, self.loop.now)

    def _account(self, req: _Req, n: float) -> None:
        server = req.server
        assert server is not None
        server.up_bytes += n
        req.client.down_bytes += n
        self.bytes_by_role[server.role] += n
        server.policy.served(req.client.name, n, self.loop.now)

    def _begin(self, req: _Req) -> None:
        req.timer = None
        if not req.alive:
            return
        server = req.server
        assert server is not None
        if not server.present or server.offline:
            self._fail(req, "error", "connection reset")
            return
        self._feed(req.client, RequestStarted(req.action.id))
        if not req.alive:
            return
        req.seg_end = self._chunk_end(req, req.chunk)
        cap = INF
        if server.role == "staller":
            cap = 0.0
        elif self.partitioned(req.client.name, server.name):
            cap = 0.0
            req.partitioned = True
        req.flow = self.net.start(
            server.name, req.client.name, req.seg_end, self._segment_done, cap, req
        )

    def _chunk_end(self, req: _Req, chunk: int) -> int:
        """Bytes from the request's start to the end of ``chunk``."""
        return min((chunk + 1) * self.chunk_size, self.size) - req.action.start

    def _segment_done(self, flow: Flow) -> None:
        req: _Req = flow.data
        client, server = req.client, req.server
        assert server is not None
        c = req.chunk
        n = req.seg_end - req.reported
        req.reported = req.seg_end
        req.reported_at = self.loop.now
        self._account(req, n)
        rid = req.action.id
        # The chunk's last bytes, its verdict and (at the end of the range) the end of
        # the response reach the scheduler together: one batch, one decision.
        news: list[Event] = [BytesReceived(rid, n)]
        if server.role == "malicious":
            server.corrupt_sent += 1
            self.corrupt_received += 1
            self.corrupt_pairs.add((client.name, server.name))
            if not client.has[c]:
                client.bad_chunks.add(c)
            self.wasted_bytes += self._chunk_len(c)
            news.append(ChunkCorrupt(c, (server.name,)))
        else:
            if client.has[c]:
                self.wasted_bytes += self._chunk_len(c)
            else:
                self._store(client, c)
            news.append(ChunkVerified(c, (server.name,)))
        if c < req.action.last:
            req.chunk = c + 1
            end = self._chunk_end(req, c + 1)
            self.net.extend(flow, end - req.seg_end)
            req.seg_end = end
        else:
            client.reqs.pop(rid, None)
            self._close(req)
            news.append(RequestDone(rid))
        self._feed_all(client, news)

    def _chunk_len(self, c: int) -> int:
        return min(self.chunk_size, self.size - c * self.chunk_size)

    def _store(self, node: Node, c: int) -> None:
        node.has[c] = 1
        node.held += 1
        node.bad_chunks.discard(c)
        self.copies[c] += 1
        side = self._side
        news = Have(node.name, c)  # immutable: one event object for every watcher
        for w in node.watchers:
            other = self.nodes[w]
            if other.has[c] or not other.downloading:
                continue  # a verified chunk's holders no longer matter to its scheduler
            if side is not None and side.get(w, 0) != side.get(node.name, 0):
                continue  # the news does not cross a partition
            self._feed(other, news)

    # ---- faults ----------------------------------------------------------------------

    def split(self, groups: Iterable[Iterable[str]]) -> None:
        """Partition the network: hosts in different groups (unlisted: group 0) cannot talk.

        Open connections across the cut go silent (no RST crosses a partition);
        new ones time out.
        """
        side: dict[str, int] = {}
        for i, group in enumerate(groups):
            for name in group:
                side[name] = i
        self._side = side
        for node in self.nodes.values():
            for req in list(node.reqs.values()):
                if (
                    req.flow is not None
                    and req.server is not None
                    and self.partitioned(node.name, req.server.name)
                ):
                    req.partitioned = True
                    self.net.set_cap(req.flow, 0.0)

    def heal(self) -> None:
        """End the partition; stalled connections resume, holdings are re-announced."""
        side = self._side
        self._side = None
        if side is None:
            return
        for node in self.nodes.values():
            for req in list(node.reqs.values()):
                if req.partitioned and req.flow is not None and req.server is not None:
                    req.partitioned = False
                    if req.server.role != "staller":
                        self.net.set_cap(req.flow, INF)
        for node in self.nodes.values():
            if not node.downloading:
                continue
            for s in list(node.sources):
                other = self.nodes[s]
                if side.get(s, 0) != side.get(node.name, 0) and not other.complete:
                    self._feed(node, HaveBitfield(s, self._bitfield(other)))

    def set_offline(self, name: str, offline: bool) -> None:
        """Take a host (a mirror) down or bring it back. Down: open transfers reset."""
        node = self.nodes[name]
        node.offline = offline
        if offline:
            for req in list(node.serving):
                self._fail(req, "error", "connection reset")

    def set_speed(self, name: str, factor: float) -> None:
        """Scale a host's uplink to ``factor`` of its nominal capacity (a mirror slowing down)."""
        node = self.nodes[name]
        self.net.set_capacity(name, up=node.spec.up * factor)
