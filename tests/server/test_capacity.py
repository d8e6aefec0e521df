"""Upload capacity: slots, the wait queue and its policy, the rate limit, 503 + Retry-After."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from peer.incentives.client import PeerAuth
from peer.incentives.identity import PeerIdentity
from webseed.server.app import create_app
from webseed.server.capacity import (
    FifoPolicy,
    OverCapacity,
    RateLimiter,
    Requester,
    SlotPool,
    UploadPolicy,
)
from webseed.server.standalone import running


class ByContribution:
    """A stand-in for the incentives layer's policy: rank = what the peer gave us."""

    def __init__(self, given: dict[str, float]) -> None:
        self.given = given
        self.served_log: list[tuple[str, int]] = []

    def rank(self, requester: Requester) -> float:
        return self.given.get(requester.peer, 0.0)

    def served(self, requester: Requester, nbytes: int) -> None:
        self.served_log.append((requester.peer, nbytes))


def who(peer: str) -> Requester:
    return Requester(peer=peer, host="127.0.0.1")


def test_protocols() -> None:
    assert isinstance(FifoPolicy(), UploadPolicy)
    assert isinstance(ByContribution({}), UploadPolicy)


def test_policy_orders_waiters_and_evicts_the_lowest() -> None:
    async def main() -> list[str]:
        policy = ByContribution({"gold": 10, "silver": 5, "bronze": 1})
        pool = SlotPool(1, policy=policy, max_wait=5, queue_limit=2)
        await pool.acquire(who("first"))
        order: list[str] = []

        async def wait(name: str) -> None:
            try:
                await pool.acquire(who(name))
            except OverCapacity as exc:
                order.append(f"503:{name}:{exc.retry_after}")
                return
            order.append(name)
            await asyncio.sleep(0.01)
            pool.release()

        tasks = [asyncio.create_task(wait("bronze"))]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(wait("silver")))
        await asyncio.sleep(0.01)
        assert pool.waiting == 2
        tasks.append(asyncio.create_task(wait("gold")))  # queue full: bronze is evicted
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(wait("anon")))  # ranks 0: refused outright
        await asyncio.sleep(0.01)
        pool.release()
        await asyncio.gather(*tasks)
        assert pool.in_use == 0 and pool.waiting == 0
        return order

    assert asyncio.run(main()) == ["503:bronze:1", "503:anon:1", "gold", "silver"]


def test_fifo_and_timeout() -> None:
    async def main() -> None:
        pool = SlotPool(1, max_wait=0.05)
        await pool.acquire(who("a"))
        start = time.perf_counter()
        with pytest.raises(OverCapacity):
            await pool.acquire(who("b"))
        assert 0.04 < time.perf_counter() - start < 1
        assert pool.waiting == 0
        pool.release()
        await pool.acquire(who("c"))
        assert pool.in_use == 1
        no_wait = SlotPool(1, max_wait=0)
        await no_wait.acquire(who("a"))
        with pytest.raises(OverCapacity):
            await no_wait.acquire(who("b"))

    asyncio.run(main())
    with pytest.raises(ValueError):
        SlotPool(-1)
    with pytest.raises(ValueError):
        RateLimiter(-5)


def test_rate_limiter_token_bucket() -> None:
    limiter = RateLimiter(1000)
    assert limiter.reserve(1000) == 0.0  # one second of burst
    assert limiter.reserve(500) == pytest.approx(0.5, abs=0.05)
    assert RateLimiter(0).reserve(10**9) == 0.0
    assert RateLimiter(10**9).block_size == 10**9 // 8
    assert RateLimiter(0).block_size is None


@pytest.fixture()
def bigrepo(tmp_path: Path) -> Path:
    # Large enough to fill loopback socket buffers, so an unread answer keeps its slot.
    with open(tmp_path / "huge.bin", "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    (tmp_path / "small.bin").write_bytes(b"s" * 3 * 1024 * 1024)
    return tmp_path


def test_503_with_retry_after_when_slots_are_full(bigrepo: Path) -> None:
    app = create_app(bigrepo, slots=1, max_wait=0.2)
    with running(app) as url, httpx.Client(timeout=10) as hog, httpx.Client(timeout=10) as c:
        with hog.stream("GET", f"{url}/huge.bin") as stuck:
            assert stuck.status_code == 200
            start = time.perf_counter()
            r = c.get(f"{url}/small.bin")
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert time.perf_counter() - start < 2
            # Small well-known answers need no upload slot.
            stats = c.get(f"{url}/.well-known/webseed/stats").json()
            assert stats["slots"]["in_use"] == 1
            assert stats["refused_over_capacity"] == 1
        # The hog went away mid-answer: its slot comes back.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = c.get(f"{url}/small.bin")
            if r.status_code == 200:
                break
            time.sleep(0.05)
        assert r.status_code == 200 and len(r.content) == 3 * 1024 * 1024


def test_rate_limit_slows_uploads(bigrepo: Path) -> None:
    app = create_app(bigrepo, rate=2 * 1024 * 1024)
    assert app.state.peer.read_size == 256 * 1024
    with running(app) as url:
        start = time.perf_counter()
        r = httpx.get(f"{url}/small.bin", timeout=20)
        elapsed = time.perf_counter() - start
    assert r.content == b"s" * 3 * 1024 * 1024
    # 2 MiB of burst, then 1 MiB at 2 MiB/s.
    assert 0.4 < elapsed < 5, elapsed


def test_policy_hears_what_was_served(bigrepo: Path) -> None:
    policy = ByContribution({})
    app = create_app(bigrepo, slots=2, policy=policy)
    with running(app) as url:
        me = PeerIdentity.generate()
        httpx.get(f"{url}/small.bin", headers={"Range": "bytes=0-99"}, auth=PeerAuth(me))
        # A bare claimed id is not an identity: served anonymously.
        httpx.get(f"{url}/small.bin", headers={"Range": "bytes=0-9", "Webseed-Peer": "p1"})
    assert policy.served_log == [(me.peer_id, 100), ("", 10)]


def test_parse_rate() -> None:
    from webseed.commands.serve import _parse_rate

    assert _parse_rate("0") == 0
    assert _parse_rate("1000") == 1000
    assert _parse_rate("500K") == 500 * 1024
    assert _parse_rate("20M") == 20 * 1024 * 1024
    assert _parse_rate("1GB/s") == 1024**3
    assert _parse_rate("1.5m") == int(1.5 * 1024 * 1024)
