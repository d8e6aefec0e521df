"""The sans-I/O policy and health state machine, driven with explicit times."""

from __future__ import annotations

import math

from geo.health import Failure, HealthConfig, MirrorHealth, State
from geo.mirror import Mirror
from geo.policy import MirrorPolicy, PolicyConfig
from geo.proximity import Place

FRA = Place("DE", "EU", 50.11, 8.68, "10.0.0.0/8")
NEAR = Mirror(url="http://near.example/", country="DE", lat=50.0, lon=8.5)
FAR = Mirror(url="http://far.example/", country="US", lat=40.7, lon=-74.0)
MID = Mirror(url="http://mid.example/", country="FR")


def test_health_degrades_goes_down_backs_off_and_recovers() -> None:
    h = MirrorHealth(config=HealthConfig(down_after=3, backoff_base=2.0, backoff_max=10.0))
    assert h.state is State.UP and h.describe() == "up"
    h.record_failure(0.0, Failure.HTTP_5XX, "503")
    assert h.state is State.DEGRADED and h.usable(0.0)
    assert h.describe() == "degraded (http-5xx: 503)"
    h.record_failure(1.0, Failure.TIMEOUT)
    h.record_failure(2.0, Failure.CONNECT, "refused")
    assert h.state is State.DOWN and h.retry_at == 4.0 and h.down_since == 2.0
    assert not h.usable(3.9) and h.usable(4.0)
    h.record_failure(4.0, Failure.CONNECT)  # the retry failed: back-off doubles
    assert h.retry_at == 8.0 and h.down_since == 2.0
    for t in range(5):
        h.record_failure(10.0 + t, Failure.CONNECT)
    assert h.retry_at == 14.0 + 10.0  # capped at backoff_max
    h.record_success(30.0, rtt=0.02, nbytes=1000, seconds=0.5)
    assert h.state is State.UP and h.consecutive_failures == 0 and h.usable(30.0)
    assert h.rtt == 0.02 and h.rate == 2000.0 and h.bytes_served == 1000
    h.record_transfer(3000, 0.5)
    assert h.rate == 0.7 * 2000 + 0.3 * 6000
    h.record_transfer(0, 1.0)
    h.record_transfer(10, 0.0)  # bytes counted, no rate sample
    assert h.bytes_served == 4010


def test_bad_content_goes_down_at_once_for_longer() -> None:
    h = MirrorHealth()
    h.record_failure(0.0, Failure.HTML_PAGE, "error page")
    assert h.state is State.DOWN and h.retry_at == 60.0
    h.record_failure(60.0, Failure.WRONG_CONTENT)
    assert h.retry_at == 60.0 + 120.0


def test_geography_seeds_the_ranking() -> None:
    policy = MirrorPolicy([FAR, MID, NEAR], client=FRA)
    ranked = policy.rank(0.0)
    assert [r.mirror for r in ranked] == [NEAR, MID, FAR]
    assert ranked[0].reason == "seeded by coordinates" and not ranked[0].measured
    assert ranked[1].reason == "seeded by tier"


def test_measured_performance_overrides_geography() -> None:
    policy = MirrorPolicy([NEAR, FAR], client=FRA)
    policy.on_success(NEAR.url, 0.0, rtt=0.010, nbytes=64_000, seconds=0.5)  # 128 kB/s
    policy.on_success(FAR.url, 0.0, rtt=0.090, nbytes=64_000, seconds=0.01)  # 6.4 MB/s
    assert [r.mirror for r in policy.rank(0.0)] == [FAR, NEAR]
    assert policy.rank(0.0)[0].reason == "measured"
    # The download's own traffic keeps updating it: the far mirror slows to a crawl.
    for _ in range(20):
        policy.on_transfer(FAR.url, 1000, 1.0)
    assert policy.candidates(0.0, k=1) == [NEAR]


def test_health_gates_and_probation() -> None:
    cfg = PolicyConfig(health=HealthConfig(down_after=2, backoff_base=5.0))
    policy = MirrorPolicy([NEAR, MID, FAR], client=FRA, config=cfg)
    policy.on_failure(NEAR.url, Failure.CONNECT, 0.0, "refused")
    ranked = policy.rank(0.0)
    # One failure: NEAR is still usable but penalised below both others.
    assert [r.mirror for r in ranked] == [MID, FAR, NEAR]
    assert ranked[2].state is State.DEGRADED and ranked[2].usable
    assert "after healthy mirrors" in ranked[2].reason
    policy.on_failure(NEAR.url, Failure.CONNECT, 1.0, "refused")
    ranked = policy.rank(1.0)
    assert ranked[-1].mirror == NEAR and not ranked[-1].usable and math.isinf(ranked[-1].estimate)
    assert "skipped: down" in ranked[-1].reason
    assert policy.candidates(1.0, k=3) == [MID, FAR]
    assert policy.candidates(1.0, k=3, exclude=[MID.url]) == [FAR]
    # After the back-off NEAR is retried, but only after the healthy mirrors.
    later = policy.rank(6.0)
    assert later[-1].mirror == NEAR and later[-1].usable and "probation" in later[-1].reason
    policy.on_success(NEAR.url, 6.0, rtt=0.005)
    assert policy.rank(6.0)[0].mirror == NEAR


def test_ties_use_priority_then_listed_order_without_geoip() -> None:
    a = Mirror(url="http://a.example/", priority=2)
    b = Mirror(url="http://b.example/", priority=1)
    c = Mirror(url="http://c.example/")
    d = Mirror(url="http://d.example/")
    policy = MirrorPolicy([a, b, c, d])  # no client place: nothing to seed
    assert [m.url for m in policy.candidates(0.0, k=4)] == [b.url, a.url, c.url, d.url]


def test_capacity_membership_and_report() -> None:
    big = Mirror(url="http://big.example/", capacity=100e6)
    small = Mirror(url="http://small.example/", capacity=1e6)
    policy = MirrorPolicy([small, big])
    assert policy.candidates(0.0, k=1) == [big]
    policy.set_place(big.url, Place("DE", "EU", 50.0, 8.0, "10.0.0.0/8"))
    assert policy.place(big.url) is not None and policy.health(big.url).state is State.UP
    policy.on_failure(small.url, Failure.WRONG_CONTENT, 0.0, "digest")
    rows = policy.report(0.0)
    assert [r["url"] for r in rows] == [big.url, small.url]
    assert rows[0]["country"] == "DE" and rows[0]["estimate_s"] is not None
    assert rows[1]["estimate_s"] is None and rows[1]["state"] == "down"
    policy.remove(small.url)
    assert policy.mirrors == [big]
    # Events for unknown mirrors are ignored (a mirror removed while a request was in flight).
    policy.on_success("http://gone/", 0.0)
    policy.on_failure("http://gone/", Failure.TIMEOUT, 0.0)
    policy.on_transfer("http://gone/", 10, 1.0)
