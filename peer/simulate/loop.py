"""The event loop: virtual time, a heap of timers, seeded randomness.

Nothing here reads a real clock. Time only moves when the next timer fires, so
a simulated hour costs what its events cost, and two runs with the same seed
fire the same callbacks in the same order (ties are broken by insertion order).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from webseed.errors import WebseedError


class SimulationError(WebseedError):
    """The simulation was asked something impossible (time travel, a bad scenario)."""


class Timer:
    """A scheduled callback; :meth:`cancel` it and it never fires."""

    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Do not fire. Cheap: the heap entry is skipped when it comes up."""
        self.cancelled = True


class EventLoop:
    """A discrete-event loop over virtual seconds.

    ``rng`` is the one source of randomness of a run: every component draws
    from it (or from generators seeded from it), which is what makes a run
    reproducible from its seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.now = 0.0
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self._stopped = False
        # Cancelled timers stay in the heap until they come up; in a big swarm most
        # entries are re-armed flow timers, so the heap is swept when it doubles.
        self._sweep_at = 4096
        #: Callbacks fired so far (a cost measure for benchmarks).
        self.fired = 0

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` at virtual time ``when`` (not before now)."""
        if when < self.now:
            if when < self.now - 1e-9:
                raise SimulationError(f"cannot schedule at {when} < now {self.now}")
            when = self.now
        timer = Timer(when, callback, args)
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, timer))
        if len(heap) > self._sweep_at:
            self._sweep()
        return timer

    def _sweep(self) -> None:
        """Drop cancelled timers from the heap (in place: :meth:`run` holds it). The
        order of the rest is unchanged: entries compare by (time, insertion number)."""
        heap = self._heap
        heap[:] = [entry for entry in heap if not entry[2].cancelled]
        heapq.heapify(heap)
        self._sweep_at = max(4096, 2 * len(heap))

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` ``delay`` seconds from now."""
        return self.call_at(self.now + max(0.0, delay), callback, *args)

    def stop(self) -> None:
        """Return from :meth:`run` after the current callback."""
        self._stopped = True

    def pending(self) -> int:
        """Timers in the heap (cancelled ones included until they come up)."""
        return len(self._heap)

    def run(self, until: float = float("inf"), max_events: int | None = None) -> float:
        """Fire timers in time order until none are left, ``until`` is reached,
        :meth:`stop` is called or ``max_events`` callbacks have fired. Returns the time."""
        heap = self._heap
        pop = heapq.heappop
        self._stopped = False
        budget = max_events if max_events is not None else -1
        while heap and not self._stopped and budget != 0:
            when, _, timer = heap[0]
            if when > until:
                self.now = until
                return self.now
            pop(heap)
            if timer.cancelled:
                continue
            self.now = when
            timer.callback(*timer.args)
            self.fired += 1
            budget -= 1
        if not heap and until != float("inf"):
            self.now = max(self.now, until)
        return self.now
