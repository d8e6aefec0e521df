"""Upload capacity: concurrent upload slots, a byte-rate limit, and who is served first.

Choking is HTTP-native: a peer over capacity answers ``503`` with
``Retry-After`` instead of queueing without bound. A request that finds every
slot taken may wait a short, bounded time in a bounded queue; the
:class:`UploadPolicy` decides the order of that queue (and so who gets the next
free slot). The default :class:`FifoPolicy` serves in arrival order; the
incentives layer plugs in a policy that ranks by contribution.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Requester:
    """Who asks for an upload: the claimed peer identity (may be empty) and the address."""

    peer: str
    host: str
    path: str = ""


@runtime_checkable
class UploadPolicy(Protocol):
    """Decides who gets a free upload slot first. Implemented by the incentives layer.

    ``rank`` is called once when a request has to wait for a slot: larger ranks
    are served first, equal ranks in arrival order. When the wait queue is full,
    a newcomer that outranks the lowest waiter takes its place (that waiter gets
    ``503``). ``served`` reports the bytes sent to a requester after each
    response, so a policy can account for them.
    """

    def rank(self, requester: Requester) -> float:
        """Priority of a waiting request; larger is served first."""
        ...

    def served(self, requester: Requester, nbytes: int) -> None:
        """``nbytes`` were uploaded to ``requester``."""
        ...


class FifoPolicy:
    """First come, first served: every requester has the same rank."""

    def rank(self, requester: Requester) -> float:
        """Always 0: ties are broken by arrival order."""
        return 0.0

    def served(self, requester: Requester, nbytes: int) -> None:
        """FIFO keeps no account."""


class OverCapacity(Exception):
    """No slot within the allowed wait; answer 503 with ``Retry-After``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"over upload capacity, retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass(order=True)
class _Waiter:
    key: tuple[float, int]
    future: asyncio.Future[None] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)


class SlotPool:
    """``slots`` concurrent uploads (0 = unlimited), a bounded wait queue ordered by a policy.

    Thread-safe: the ASGI app waits with :meth:`acquire`; the WSGI middleware
    (threads, no queue) uses :meth:`try_acquire`.
    """

    def __init__(
        self,
        slots: int = 0,
        *,
        policy: UploadPolicy | None = None,
        max_wait: float = 1.0,
        queue_limit: int | None = None,
        retry_after: int = 1,
    ) -> None:
        if slots < 0:
            raise ValueError("slots must be >= 0")
        self.slots = slots
        self.policy: UploadPolicy = policy or FifoPolicy()
        self.max_wait = max_wait
        self.queue_limit = queue_limit if queue_limit is not None else 4 * max(slots, 1)
        self.retry_after = retry_after
        self._in_use = 0
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []  # heap: lowest key = served first
        self._seq = itertools.count()
        self._retry_bytes = (retry_after, str(retry_after).encode())

    @property
    def in_use(self) -> int:
        """Slots currently held."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    @property
    def saturated(self) -> bool:
        """Every slot taken and the wait queue full: a newcomer waits nowhere (lock-free read).

        The over-capacity fast path (:mod:`webseed.server.overload`) checks this
        first; a slot freed a moment later only means one request refused early.
        """
        return (
            bool(self.slots)
            and self._in_use >= self.slots
            and (len(self._waiters) >= self.queue_limit or self.max_wait <= 0)
        )

    def refuses(self, rank: float) -> bool:
        """Whether a newcomer of ``rank`` would be refused now (it outranks no waiter)."""
        with self._lock:
            if not self.saturated:
                return False
            if self.max_wait <= 0 or not self._waiters:
                return True
            return rank <= -max(self._waiters).key[0]

    def retry_after_now(self) -> bytes:
        """The ``Retry-After`` value for a refusal now, as header bytes."""
        if self._retry_bytes[0] != self.retry_after:
            self._retry_bytes = (self.retry_after, str(self.retry_after).encode())
        return self._retry_bytes[1]

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for it."""
        with self._lock:
            if self.slots and (self._in_use >= self.slots or self._waiters):
                return False
            self._in_use += 1
            return True

    async def acquire(self, requester: Requester, rank: float | None = None) -> None:
        """Take a slot, waiting at most ``max_wait``; raise :class:`OverCapacity` otherwise.

        ``rank``: the policy's rank if the caller already asked for it (the fast
        path does, for anonymous requests), so the policy is asked once per request.
        """
        if self.try_acquire():
            return
        if self.max_wait <= 0 or self.queue_limit <= 0:
            raise OverCapacity(self.retry_after)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            (-(self.policy.rank(requester) if rank is None else rank), next(self._seq)),
            loop.create_future(),
            loop,
        )
        evicted: _Waiter | None = None
        with self._lock:
            if len(self._waiters) >= self.queue_limit:
                worst = max(self._waiters)
                if worst.key <= waiter.key:
                    raise OverCapacity(self.retry_after)
                self._waiters.remove(worst)
                heapq.heapify(self._waiters)
                evicted = worst
            heapq.heappush(self._waiters, waiter)
        if evicted is not None:
            _resolve(evicted, OverCapacity(self.retry_after))
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.max_wait)
        except TimeoutError:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    heapq.heapify(self._waiters)
                    raise OverCapacity(self.retry_after) from None
            # The slot was handed over just as the wait ran out: keep it.
            await waiter.future

    def release(self) -> None:
        """Give a slot back: to the best waiter if any, else to the pool."""
        with self._lock:
            if self._waiters:
                waiter = heapq.heappop(self._waiters)
            else:
                self._in_use -= 1
                return
        _resolve(waiter, None)


def _resolve(waiter: _Waiter, error: BaseException | None) -> None:
    def settle() -> None:
        if waiter.future.done():
            return
        if error is None:
            waiter.future.set_result(None)
        else:
            waiter.future.set_exception(error)

    waiter.loop.call_soon_threadsafe(settle)


class RateLimiter:
    """A token bucket shared by all uploads: ``rate`` bytes/s (0 = unlimited), 1 s of burst.

    Callers reserve before sending; a reservation beyond the bucket sleeps for
    the deficit, so concurrent uploads share the rate in arrival order.
    """

    def __init__(self, rate: int = 0) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate
        self._tokens = float(rate)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    @property
    def block_size(self) -> int | None:
        """A send size that keeps the limit smooth (about 1/8 s of rate), or None if unlimited."""
        if not self.rate:
            return None
        return max(16 * 1024, self.rate // 8)

    def reserve(self, nbytes: int) -> float:
        """Reserve ``nbytes``; return how long to wait before sending them."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self, nbytes: int) -> None:
        """Wait (asyncio) until ``nbytes`` may be sent."""
        delay = self.reserve(nbytes)
        if delay:
            await asyncio.sleep(delay)

    def take_blocking(self, nbytes: int) -> None:
        """Wait (thread) until ``nbytes`` may be sent."""
        delay = self.reserve(nbytes)
        if delay:
            time.sleep(delay)
