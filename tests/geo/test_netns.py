"""Scenarios that need a network namespace: a black-holed mirror and ``tc tbf`` shaping.

The black hole drops SYNs without any answer (no RST, no ICMP), so only a
time-out could reveal it; the race must not wait for one. Skipped, with the
reason, where namespaces cannot be created (not root, no iproute2).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from geo.errors import NoMirrorError
from geo.fetch import MirrorFetcher, digest_of
from geo.health import Failure, State
from geo.mirror import Mirror
from geo.policy import MirrorPolicy
from geo.race import race_first_byte
from tests.geo.netns import MirrorNamespace, unavailable_reason
from tests.geo.servers import DATA, PATH, MirrorServer
from tests.prereq import missing

pytestmark = pytest.mark.netns
SIZE = len(DATA)


@pytest.fixture(scope="module")
def shaped() -> Iterator[tuple[str, str]]:
    """(URL of a mirror shaped to 8 Mbit/s by tc tbf, URL of a black-holed address)."""
    reason = unavailable_reason()
    if reason is not None:
        missing(reason)
    ns = MirrorNamespace(1, rate="8mbit")
    try:
        server = MirrorServer("good", host=ns.ns_ip, sock=ns.listen(), piece=64 * 1024)
        try:
            yield server.url, ns.blackhole_url
        finally:
            server.stop()
    finally:
        ns.close()


def test_race_is_not_held_up_by_a_black_hole(
    shaped: tuple[str, str], mirror_factory: Callable[..., MirrorServer]
) -> None:
    _, hole = shaped
    good = mirror_factory("good")
    mirrors = [Mirror(url=hole), Mirror(url=hole.replace(":80/", ":81/")), Mirror(url=good.url)]

    async def run() -> tuple[float, str]:
        async with httpx.AsyncClient() as client:
            t0 = time.perf_counter()
            stream = await race_first_byte(client, mirrors, PATH, 0, 1023, total_size=SIZE)
            elapsed = time.perf_counter() - t0
            await stream.aclose()
            return elapsed, stream.mirror.url

    elapsed, winner = asyncio.run(run())
    assert winner == good.url
    assert elapsed < 1.0, f"first byte after {elapsed:.3f}s"  # two staggers, ~150 ms

    async def only_hole() -> None:
        async with httpx.AsyncClient() as client:
            await race_first_byte(client, mirrors[:1], PATH, 0, 1023, deadline=0.5)

    t0 = time.perf_counter()
    with pytest.raises(NoMirrorError, match="timeout"):
        asyncio.run(only_hole())
    assert time.perf_counter() - t0 < 1.5


def test_tbf_shaped_mirror_is_measured_and_ranked_below_a_fast_one(
    shaped: tuple[str, str], mirror_factory: Callable[..., MirrorServer]
) -> None:
    slow_url, hole = shaped
    good = mirror_factory("good")
    # The shaped mirror is listed first and the hole second: measurement must reorder.
    policy = MirrorPolicy([Mirror(url=slow_url), Mirror(url=hole), Mirror(url=good.url)])
    short = httpx.Timeout(connect=0.5, read=2.0, write=2.0, pool=1.0)

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy, timeout=short)
            await fetcher.probe_all(PATH, 0, 256 * 1024, total_size=SIZE, budget=3.0)

    asyncio.run(run())
    ranked = policy.rank(time.monotonic())
    assert [r.mirror.url for r in ranked][:2] == [good.url, slow_url]
    slow_rate = policy.health(slow_url).rate
    assert slow_rate is not None and slow_rate < 1.2e6  # 8 Mbit/s is 1 MB/s on the wire
    assert policy.health(hole).last_failure is Failure.TIMEOUT
    assert policy.health(hole).state is State.DEGRADED

    async def fetch() -> bytes:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy, timeout=short)
            result = await fetcher.fetch_range(
                PATH, 0, SIZE - 1, total_size=SIZE, expected_digest=digest_of(DATA)
            )
            assert result.served_by[0][0] == good.url
            return result.data

    assert asyncio.run(fetch()) == DATA
