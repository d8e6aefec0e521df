"""A flow-level network: max-min fair sharing of each host's uplink and downlink.

Every host has an uplink and a downlink of fixed capacity (bytes/s); the core
is assumed never to be the bottleneck, which is the usual model for residential
swarms (access links are what is scarce). A flow moves bytes from one host's
uplink to another host's downlink, optionally under a cap of its own (a stalled
or throttled sender). Rates are the max-min fair allocation over all links,
recomputed whenever a flow starts or ends or a capacity changes.

The allocation is maintained incrementally. Each link has a *fair share*: the
water level at which it is exactly full given what its flows can take elsewhere
(``inf`` while it is not a bottleneck). A flow's rate is the smallest share on
its path. The max-min allocation is the fixed point of "every link recomputes
its level from its neighbours' levels", so after a change only the links whose
level actually moves are re-solved, spreading outward from the change and
stopping where levels settle (in an uplink-bound swarm, at the downlinks,
which stay unsaturated). That keeps one change cheap in a network of 10,000
hosts, where progressive filling over every flow would not be.

Changes made within one instant are batched: the first one schedules a solve
at the same virtual time, so a burst of starts and stops costs one solve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .loop import EventLoop, SimulationError, Timer

INF = float("inf")


class Link:
    """One direction of a host's access link."""

    __slots__ = ("capacity", "flows", "is_up", "name", "share")

    def __init__(self, name: str, capacity: float, is_up: bool) -> None:
        self.name = name
        self.capacity = capacity
        self.is_up = is_up
        # A dict, not a set: iteration order must not depend on memory addresses.
        self.flows: dict[Flow, None] = {}
        #: Water level of the max-min allocation at this link (``inf``: not a bottleneck).
        self.share = INF

    def level(self) -> float:
        """The max-min water level given what each flow could take elsewhere."""
        flows = self.flows
        n = len(flows)
        if n == 0:
            return INF
        if self.is_up:
            demands = sorted([f.cap if f.cap < f.down.share else f.down.share for f in flows])
        else:
            demands = sorted([f.cap if f.cap < f.up.share else f.up.share for f in flows])
        remaining = self.capacity
        for i, demand in enumerate(demands):
            fair = remaining / (n - i)
            if demand >= fair:
                return fair
            remaining -= demand
        return INF


class Host:
    """A host: an uplink and a downlink (bytes/s)."""

    __slots__ = ("down", "name", "up")

    def __init__(self, name: str, up: float, down: float) -> None:
        self.name = name
        self.up = Link(name + "/up", up, True)
        self.down = Link(name + "/down", down, False)


class Flow:
    """Bytes moving from ``src``'s uplink to ``dst``'s downlink.

    ``remaining`` bytes are left as of ``stamp``; at the current ``rate`` the
    flow reaches its target at ``stamp + remaining / rate``, when ``on_done(flow)``
    runs. The callback may :meth:`Network.extend` the flow (the next chunk of a
    ranged response) or :meth:`Network.stop` it.
    """

    __slots__ = (
        "alive",
        "cap",
        "data",
        "down",
        "moved",
        "on_done",
        "rate",
        "remaining",
        "stamp",
        "timer",
        "up",
    )

    def __init__(
        self,
        up: Link,
        down: Link,
        nbytes: float,
        on_done: Callable[[Flow], Any],
        cap: float,
        now: float,
        data: Any,
    ) -> None:
        self.up = up
        self.down = down
        self.remaining = float(nbytes)
        self.moved = 0.0
        self.stamp = now
        self.rate = 0.0
        self.cap = cap
        self.on_done = on_done
        self.timer: Timer | None = None
        self.alive = True
        #: Whatever the driver wants to hang on the flow (its request).
        self.data = data

    def progress(self, now: float) -> float:
        """Bytes moved since the flow started, as of ``now``."""
        return self.moved + self.rate * (now - self.stamp)


class Network:
    """Hosts, flows and the max-min fair rates between them."""

    def __init__(self, loop: EventLoop, tolerance: float = 1e-9) -> None:
        self.loop = loop
        self.hosts: dict[str, Host] = {}
        #: Relative change below which a link's new level is not propagated further.
        self.tolerance = tolerance
        # Dicts used as ordered sets, so runs are reproducible.
        self._dirty: dict[Link, None] = {}
        self._touched: dict[Flow, None] = {}
        self._solve_timer: Timer | None = None
        #: Cost counters for benchmarks.
        self.solves = 0
        self.link_updates = 0
        self.rate_updates = 0

    # ---- hosts -----------------------------------------------------------

    def add_host(self, name: str, up: float, down: float) -> Host:
        """Add a host with uplink ``up`` and downlink ``down`` (bytes/s)."""
        if name in self.hosts:
            raise SimulationError(f"host {name!r} exists")
        if up < 0 or down < 0:
            raise SimulationError("capacities must be >= 0")
        host = Host(name, up, down)
        self.hosts[name] = host
        return host

    def set_capacity(self, name: str, up: float | None = None, down: float | None = None) -> None:
        """Change a host's link capacities (a mirror slowing down, say)."""
        host = self.hosts[name]
        if up is not None:
            host.up.capacity = up
            self._mark(host.up)
        if down is not None:
            host.down.capacity = down
            self._mark(host.down)

    # ---- flows -----------------------------------------------------------

    def start(
        self,
        src: str,
        dst: str,
        nbytes: float,
        on_done: Callable[[Flow], Any],
        cap: float = INF,
        data: Any = None,
    ) -> Flow:
        """Start moving ``nbytes`` from ``src`` to ``dst``; ``on_done`` runs when they are moved."""
        up = self.hosts[src].up
        down = self.hosts[dst].down
        flow = Flow(up, down, nbytes, on_done, cap, self.loop.now, data)
        up.flows[flow] = None
        down.flows[flow] = None
        self._touched[flow] = None
        self._mark(up)
        self._mark(down)
        return flow

    def extend(
        self, flow: Flow, nbytes: float, on_done: Callable[[Flow], Any] | None = None
    ) -> None:
        """Give a flow ``nbytes`` more to move at its current rate (no re-solve needed)."""
        if not flow.alive:
            raise SimulationError("flow already stopped")
        self._settle(flow)
        flow.remaining += nbytes
        if on_done is not None:
            flow.on_done = on_done
        self._schedule(flow)

    def stop(self, flow: Flow) -> float:
        """Stop a flow; returns the bytes it moved. Stopping twice is harmless."""
        if not flow.alive:
            return flow.moved
        self._settle(flow)
        flow.alive = False
        flow.rate = 0.0
        if flow.timer is not None:
            flow.timer.cancel()
            flow.timer = None
        flow.up.flows.pop(flow, None)
        flow.down.flows.pop(flow, None)
        self._touched.pop(flow, None)
        self._mark(flow.up)
        self._mark(flow.down)
        return flow.moved

    def set_cap(self, flow: Flow, cap: float) -> None:
        """Limit one flow (0 stalls it: the connection is open, nothing moves)."""
        if not flow.alive:
            return
        flow.cap = cap
        self._touched[flow] = None
        self._mark(flow.up)
        self._mark(flow.down)

    def flows_of(self, name: str) -> list[Flow]:
        """Every live flow through ``name``'s links."""
        host = self.hosts[name]
        return [*host.up.flows, *host.down.flows]

    # ---- the solver ------------------------------------------------------

    def _mark(self, link: Link) -> None:
        self._dirty[link] = None
        if self._solve_timer is None:
            self._solve_timer = self.loop.call_at(self.loop.now, self.solve)

    def solve(self) -> None:
        """Bring every rate up to date (normally run by the loop at the end of an instant)."""
        if self._solve_timer is not None:
            self._solve_timer.cancel()
            self._solve_timer = None
        if not self._dirty and not self._touched:
            return
        self.solves += 1
        tol = self.tolerance
        work = list(self._dirty)
        queued = set(work)
        self._dirty = {}
        changed: dict[Link, None] = {}
        budget = 200 * (len(work) + 10) + 100_000
        while work and budget > 0:
            budget -= 1
            link = work.pop()
            queued.discard(link)
            old = link.share
            new = link.level()
            self.link_updates += 1
            if new == old:
                continue
            link.share = new
            changed[link] = None
            if old != INF and new != INF and abs(new - old) <= tol * max(old, new):
                continue
            for flow in link.flows:
                other = flow.down if link.is_up else flow.up
                if other not in queued:
                    queued.add(other)
                    work.append(other)
        flows = self._touched
        self._touched = {}
        for link in changed:
            flows.update(link.flows)
        for flow in flows:
            if not flow.alive:
                continue
            rate = flow.cap
            if flow.up.share < rate:
                rate = flow.up.share
            if flow.down.share < rate:
                rate = flow.down.share
            if rate == INF:
                raise SimulationError("a flow with no bottleneck: every link needs a capacity")
            if rate != flow.rate or flow.timer is None:
                self._settle(flow)
                flow.rate = rate
                self._schedule(flow)
                self.rate_updates += 1

    def _settle(self, flow: Flow) -> None:
        now = self.loop.now
        if now != flow.stamp:
            moved = flow.rate * (now - flow.stamp)
            if moved > flow.remaining:
                moved = flow.remaining
            flow.moved += moved
            flow.remaining -= moved
            flow.stamp = now

    def _schedule(self, flow: Flow) -> None:
        if flow.timer is not None:
            flow.timer.cancel()
            flow.timer = None
        if flow.rate > 0:
            self.flow_timer(flow)

    def flow_timer(self, flow: Flow) -> None:
        """(Re)arm the completion timer of ``flow`` at its current rate."""
        flow.timer = self.loop.call_at(self.loop.now + flow.remaining / flow.rate, self._due, flow)

    def _due(self, flow: Flow) -> None:
        flow.timer = None
        if not flow.alive:
            return
        flow.moved += flow.remaining
        flow.remaining = 0.0
        flow.stamp = self.loop.now
        flow.on_done(flow)
