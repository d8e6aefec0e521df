"""A byte budget shared by all requests: bounds the engine's chunk buffers.

Each request holds one chunk buffer while its chunk streams in. Chunk sizes
grow with the artifact (256 KiB for small ones, 16 MiB at 20 GB), so without a
cap memory would grow with the artifact. A request acquires its chunk's bytes
before it allocates the buffer and releases them once the chunk is stored; if
the budget is spent, it waits (its TCP stream pauses, the kernel window
applies back-pressure). One buffer is always granted when nothing else is
held, so a chunk larger than the budget cannot deadlock.
"""

from __future__ import annotations

import asyncio

#: Default cap on chunk buffers in flight, whatever the artifact size.
DEFAULT_BUDGET = 64 * 1024 * 1024


class ByteBudget:
    """Counting semaphore over bytes; ``release`` is synchronous, so it is safe in
    ``finally`` blocks of cancelled tasks."""

    def __init__(self, capacity: int = DEFAULT_BUDGET) -> None:
        self.capacity = capacity
        self.held = 0
        self.peak = 0
        self._waiters: list[asyncio.Future[None]] = []

    def _fits(self, n: int) -> bool:
        return self.held == 0 or self.held + n <= self.capacity

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` bytes fit (or nothing else is held), then take them."""
        while not self._fits(n):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.held += n
        self.peak = max(self.peak, self.held)

    def release(self, n: int) -> None:
        """Give back ``n`` bytes and wake the waiters (each re-checks whether it fits)."""
        self.held -= n
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
