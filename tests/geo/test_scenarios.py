"""Failure scenarios against real HTTP mirrors on 127.0.0.0/8 (Hypercorn + Starlette).

Every mirror here is a real server on an ephemeral port (see servers.py); the
client is a real httpx.AsyncClient. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from geo.errors import NoMirrorError
from geo.fetch import FetchResult, MirrorFetcher, digest_of
from geo.health import Failure, State
from geo.mirror import Mirror
from geo.policy import MirrorPolicy
from geo.proximity import GeoLocator
from geo.race import race_first_byte
from tests.geo.servers import DATA, PATH, MirrorServer, free_refused_port
from tests.geo.squid import Squid, squid_binary
from tests.prereq import missing

Factory = Callable[..., MirrorServer]
SIZE = len(DATA)
SHORT = httpx.Timeout(connect=1.0, read=1.0, write=1.0, pool=1.0)


def mirror(server: MirrorServer | str, priority: int | None = None) -> Mirror:
    url = server if isinstance(server, str) else server.url
    return Mirror(url=url, priority=priority)


def dead_url(host: str = "127.0.0.1") -> str:
    return f"http://{host}:{free_refused_port(host)}/"


async def fetch(policy: MirrorPolicy, **kw: object) -> FetchResult:
    # A long stagger so the best-ranked mirror is always the one tried (and failing)
    # first, however loaded the test machine is; the race itself is tested above.
    kw.setdefault("stagger", 0.5)
    async with httpx.AsyncClient() as client:
        fetcher = MirrorFetcher(client, policy, timeout=SHORT, **kw)  # type: ignore[arg-type]
        return await fetcher.fetch_range(
            PATH, 0, SIZE - 1, total_size=SIZE, expected_digest=digest_of(DATA)
        )


def test_race_reaches_first_byte_fast_past_dead_and_hanging_mirrors(
    mirror_factory: Factory,
) -> None:
    hang, good = mirror_factory("hang"), mirror_factory("good")
    mirrors = [mirror(dead_url()), mirror(hang), mirror(dead_url()), mirror(good)]

    async def run() -> tuple[float, str, list[str]]:
        lost: list = []
        async with httpx.AsyncClient() as client:
            t0 = time.perf_counter()
            stream = await race_first_byte(
                client, mirrors, PATH, 0, 65535, total_size=SIZE, stagger=0.075, failures=lost
            )
            elapsed = time.perf_counter() - t0
            async with stream:
                body = b"".join([c async for c in stream.chunks()])
            assert body == DATA[:65536] and stream.rtt <= elapsed
            return elapsed, stream.mirror.url, [f.kind.value for f in lost]

    elapsed, winner, lost = asyncio.run(run())
    assert winner == good.url
    assert lost == ["connect", "connect"]  # the hanging one was cancelled, not failed
    # dead: immediate; hang: one stagger (75 ms); dead: immediate; good: a few ms.
    # The requirement (issue 8) is under 1 s; loopback typically shows ~70 ms (bench.mirrors).
    assert elapsed < 1.0, f"first byte after {elapsed:.3f}s"


def test_all_sources_dead_gives_a_clear_error_quickly(mirror_factory: Factory) -> None:
    hang = mirror_factory("hang")
    policy = MirrorPolicy([mirror(dead_url()), mirror(dead_url()), mirror(hang)])
    t0 = time.perf_counter()
    with pytest.raises(NoMirrorError) as info:
        asyncio.run(fetch(policy, deadline=0.5))
    assert time.perf_counter() - t0 < 3.0
    reasons = info.value.failures
    assert set(reasons) == {m.url for m in policy.mirrors}
    assert reasons[hang.url].startswith("timeout")
    assert all(policy.health(m.url).state is not State.UP for m in policy.mirrors)


def test_probe_all_classifies_every_misbehaviour(mirror_factory: Factory) -> None:
    servers = {
        mode: mirror_factory(mode)
        for mode in ("good", "slow", "flaky", "truncate", "wrong", "html200", "wrongsize", "hang")
    }
    dead = dead_url()
    policy = MirrorPolicy([mirror(s) for s in servers.values()] + [mirror(dead)])
    length = 64 * 1024

    async def run() -> dict[str, object]:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy, timeout=SHORT)
            results = await fetcher.probe_all(
                PATH,
                0,
                length,
                total_size=SIZE,
                expected_digest=digest_of(DATA[:length]),
                budget=2.0,
            )
            return {r.url: r for r in results}

    results = asyncio.run(run())
    kind = {mode: results[s.url].failure for mode, s in servers.items()}  # type: ignore[attr-defined]
    assert kind == {
        "good": None,
        "slow": None,
        "flaky": Failure.HTTP_5XX,
        "truncate": Failure.TRUNCATED,
        "wrong": Failure.WRONG_CONTENT,
        "html200": Failure.HTML_PAGE,
        "wrongsize": Failure.WRONG_LENGTH,
        "hang": Failure.TIMEOUT,
    }
    assert results[dead].failure is Failure.CONNECT  # type: ignore[attr-defined]
    state = {mode: policy.health(s.url).state for mode, s in servers.items()}
    assert state["good"] is State.UP and state["slow"] is State.UP
    assert state["flaky"] is State.DEGRADED and state["truncate"] is State.DEGRADED
    for bad in ("wrong", "html200", "wrongsize"):
        assert state[bad] is State.DOWN  # bad bytes: out at once
    ranked = policy.rank(time.monotonic())
    assert ranked[0].mirror.url == servers["good"].url
    # Bad bytes are gated out entirely; they sort last.
    assert {r.mirror.url for r in ranked if not r.usable} == {
        servers[m].url for m in ("wrong", "html200", "wrongsize")
    }

    # The flaky mirror answers the next probe: it recovers to UP.
    async def reprobe() -> None:
        async with httpx.AsyncClient() as client:
            r = await MirrorFetcher(client, policy).probe(
                mirror(servers["flaky"]), PATH, 0, 1024, total_size=SIZE
            )
            assert r.ok and r.rate is not None

    asyncio.run(reprobe())
    assert policy.health(servers["flaky"].url).state is State.UP


def test_measured_performance_overrides_geography(mirror_factory: Factory, city_db: Path) -> None:
    """Near (same city block, 127.0.0.2) but slow vs far (New York, 127.200.0.1) and fast."""
    near = mirror_factory("slow", host="127.0.0.2", rate=200_000.0)
    far = mirror_factory("good", host="127.200.0.1")
    policy = MirrorPolicy([mirror(far), mirror(near)])

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy)
            with GeoLocator(city_db) as geo:
                await fetcher.locate(geo, "::ffff:127.0.0.1")
            first = policy.rank(time.monotonic())
            assert [r.mirror.url for r in first] == [near.url, far.url]
            assert first[0].proximity.tier == 0 and first[1].proximity.distance_km > 6000
            await fetcher.probe_all(PATH, 0, 128 * 1024, total_size=SIZE)

    asyncio.run(run())
    after = policy.rank(time.monotonic())
    assert [r.mirror.url for r in after] == [far.url, near.url]
    assert after[0].measured and after[0].rate > 5 * after[1].rate
    assert policy.client is not None and policy.client.country == "DE"


def test_locate_resolves_host_names(mirror_factory: Factory, city_db: Path) -> None:
    good = mirror_factory("good")
    named = Mirror(url=f"http://localhost:{good.port}/")
    nowhere = Mirror(url="http://no-such-host.invalid/")
    policy = MirrorPolicy([named, nowhere])

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy)
            await fetcher.locate(None)  # no database: nothing placed, nothing fails
            with GeoLocator(city_db) as geo:
                await fetcher.locate(geo)

    asyncio.run(run())
    place = policy.place(named.url)
    assert place is None or place.country == "DE"  # localhost may resolve to ::1 first
    assert policy.place(nowhere.url) is None


def test_best_mirror_dying_midway_resumes_on_the_next(mirror_factory: Factory) -> None:
    dying = mirror_factory("die", die_after=256 * 1024)
    good = mirror_factory("good")
    policy = MirrorPolicy([mirror(dying, 1), mirror(good, 2)])
    result = asyncio.run(fetch(policy))
    assert result.data == DATA
    assert result.served_by[0] == (dying.url, 0, 256 * 1024)
    assert result.served_by[-1][0] == good.url and result.served_by[-1][2] == SIZE
    assert result.first_byte_s < 1.0
    assert policy.health(dying.url).last_failure is Failure.TRUNCATED
    assert policy.candidates(time.monotonic(), k=1)[0].url == good.url


def test_truncating_mirror_resumes_elsewhere(mirror_factory: Factory) -> None:
    cut, good = mirror_factory("truncate"), mirror_factory("good")
    policy = MirrorPolicy([mirror(cut, 1), mirror(good, 2)])
    result = asyncio.run(fetch(policy))
    assert result.data == DATA
    urls = [u for u, _, _ in result.served_by]
    assert urls[0] == cut.url and urls[-1] == good.url
    assert "truncated" in result.failures[cut.url]


def test_intermittent_5xx_is_retried(mirror_factory: Factory) -> None:
    flaky = mirror_factory("flaky")
    policy = MirrorPolicy([mirror(flaky)])
    result = asyncio.run(fetch(policy))
    assert result.data == DATA and result.served_by == [(flaky.url, 0, SIZE)]
    assert result.failures[flaky.url].startswith("http-5xx")
    assert policy.health(flaky.url).state is State.UP  # recovered by the retry


@pytest.mark.parametrize("mode", ["wrong", "html200", "wrongsize"])
def test_bad_content_is_refused_and_served_by_another(mirror_factory: Factory, mode: str) -> None:
    bad, good = mirror_factory(mode), mirror_factory("good")
    policy = MirrorPolicy([mirror(bad, 1), mirror(good, 2)])
    result = asyncio.run(fetch(policy))
    assert result.data == DATA
    assert [u for u, _, _ in result.served_by][-1] == good.url
    assert policy.health(bad.url).state is State.DOWN
    assert not policy.health(bad.url).usable(time.monotonic())


def test_wrong_content_alone_is_a_clear_error(mirror_factory: Factory) -> None:
    bad = mirror_factory("wrong")
    policy = MirrorPolicy([mirror(bad)])
    with pytest.raises(NoMirrorError) as info:
        asyncio.run(fetch(policy))
    assert info.value.failures[bad.url].startswith("wrong-content")


def test_very_slow_mirror_is_abandoned_for_a_faster_one(mirror_factory: Factory) -> None:
    slow = mirror_factory("slow", rate=100_000.0)
    good = mirror_factory("good")
    policy = MirrorPolicy([mirror(slow, 1), mirror(good, 2)])
    t0 = time.perf_counter()
    result = asyncio.run(fetch(policy, min_rate=1_000_000.0, slow_grace=0.3))
    elapsed = time.perf_counter() - t0
    assert result.data == DATA
    assert result.served_by[0][0] == slow.url and result.served_by[-1][0] == good.url
    assert result.failures[slow.url].startswith("slow")
    assert elapsed < 3.0  # the slow mirror alone would need ~10 s
    assert policy.health(slow.url).state is State.DEGRADED


def test_mirror_only_reachable_through_an_http_proxy(mirror_factory: Factory) -> None:
    if squid_binary() is None:
        missing("squid not installed (.ci/system-deps.sh installs it as root)")
    # "Only via the proxy" is enforced by the mirror app (403 without a Via header),
    # standing in for a firewall that lets only the proxy through.
    behind = mirror_factory("proxyonly", host="127.0.0.3")
    squid = Squid()
    try:
        direct = MirrorPolicy([mirror(behind)])
        with pytest.raises(NoMirrorError) as info:
            asyncio.run(fetch(direct, max_switches=2))
        assert "403" in info.value.failures[behind.url]

        policy = MirrorPolicy([mirror(behind)])

        async def via_proxy() -> FetchResult:
            async with httpx.AsyncClient(proxy=squid.url) as client:
                fetcher = MirrorFetcher(client, policy)
                return await fetcher.fetch_range(
                    PATH,
                    4096,
                    4096 + 99_999,
                    total_size=SIZE,
                    expected_digest=hashlib.sha256(DATA[4096 : 4096 + 100_000]).hexdigest(),
                )

        result = asyncio.run(via_proxy())
        assert result.data == DATA[4096 : 4096 + 100_000]
        assert policy.health(behind.url).state is State.UP
    finally:
        squid.stop()


def test_html_sniffing_can_be_turned_off_for_html_artifacts(mirror_factory: Factory) -> None:
    page = b"<!DOCTYPE html><html><body>" + b"x" * 4000 + b"</body></html>"
    server = mirror_factory("good", data=page)
    policy = MirrorPolicy([mirror(server)])

    async def run(sniff: bool) -> FetchResult:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy, sniff_html=sniff, max_switches=1)
            return await fetcher.fetch_range(PATH, 0, len(page) - 1, total_size=len(page))

    with pytest.raises(NoMirrorError, match="html-page"):
        asyncio.run(run(True))
    policy = MirrorPolicy([mirror(server)])
    assert asyncio.run(run(False)).data == page
