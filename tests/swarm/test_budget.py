"""The engine's byte budget for chunk buffers."""

from __future__ import annotations

import asyncio

from peer.engine.budget import ByteBudget


def test_budget_blocks_until_release_and_never_deadlocks() -> None:
    async def main() -> list[str]:
        b = ByteBudget(100)
        order: list[str] = []
        await b.acquire(60)

        async def second() -> None:
            await b.acquire(60)
            order.append("second")
            b.release(60)

        task = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        order.append("first done")
        b.release(60)
        await task
        # Larger than the whole budget: granted when nothing else is held.
        await asyncio.wait_for(b.acquire(500), 1)
        b.release(500)
        # A cancelled waiter leaves no trace.
        await b.acquire(100)
        waiter = asyncio.create_task(b.acquire(10))
        await asyncio.sleep(0.01)
        waiter.cancel()
        b.release(100)
        assert b.held == 0 and b.peak == 500
        return order

    assert asyncio.run(main()) == ["first done", "second"]
