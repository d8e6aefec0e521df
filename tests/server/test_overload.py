"""The over-capacity fast path: real Hypercorn, real httpx clients, a saturated slot pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from peer.incentives.client import PeerAuth
from peer.incentives.identity import PeerIdentity
from webseed.server.app import create_app
from webseed.server.capacity import Requester
from webseed.server.standalone import running

HOLD = 0.3


@pytest.fixture()
def bigrepo(tmp_path: Path) -> Path:
    # Large enough to fill loopback socket buffers, so an unread answer keeps its slot.
    with open(tmp_path / "huge.bin", "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
    (tmp_path / "small.bin").write_bytes(b"s" * 100_000)
    return tmp_path


def _get(url: str, out: dict[str, int], key: str, **kw: object) -> threading.Thread:
    def go() -> None:
        out[key] = httpx.get(url, timeout=20, **kw).status_code  # type: ignore[arg-type]

    t = threading.Thread(target=go)
    t.start()
    return t


def _until(cond: object, what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@contextmanager
def saturated(app: object, url: str) -> Iterator[dict[str, int]]:
    """One slot held by a client that reads nothing, one request waiting: the queue is full."""
    pool = app.state.peer.pool  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    with httpx.Client(timeout=20) as hog, hog.stream("GET", f"{url}/huge.bin") as stuck:
        assert stuck.status_code == 200
        waiter = _get(f"{url}/small.bin", out, "waiter", headers={"Range": "bytes=0-9"})
        _until(lambda: pool.waiting == 1, "the second request did not queue")
        assert pool.saturated
        yield out
    waiter.join(20)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_refused_before_routing_held_and_counted(bigrepo: Path) -> None:
    app = create_app(bigrepo, slots=1, max_wait=5.0, refuse_hold=HOLD)
    app.state.peer.pool.queue_limit = 1
    with running(app) as url, httpx.Client(timeout=20) as c:
        with saturated(app, url) as out:
            start = time.perf_counter()
            r = c.get(f"{url}/small.bin", headers={"Range": "bytes=0-99"})
            first = time.perf_counter() - start
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.text == "over upload capacity, retry later\n"
            assert first < HOLD * 0.8, first  # a first refusal goes out at once
            # The same connection asks again at once, ignoring Retry-After: held, then refused.
            # Not routed either: a path that does not exist is refused, not looked up.
            start = time.perf_counter()
            assert c.get(f"{url}/no-such.bin").status_code == 503
            held = time.perf_counter() - start
            assert HOLD * 0.9 < held < 3, held  # held on a timer, not queued for max_wait
            # A client that gives up while held is dropped (and still counted as refused).
            with pytest.raises(httpx.ReadTimeout):
                c.get(f"{url}/small.bin", timeout=HOLD / 3)
            _until(lambda: app.state.peer.stats.refused == 3, "the dropped refusal not counted")
            # Answers that take no slot still go the normal way.
            assert c.head(f"{url}/small.bin").status_code == 200
            etag = c.head(f"{url}/small.bin").headers["etag"]
            assert c.get(f"{url}/small.bin", headers={"If-None-Match": etag}).status_code == 304
            assert c.get(f"{url}/small.bin.meta4").status_code == 404  # routed: unpublished
            metrics = c.get(f"{url}/.well-known/webseed/metrics").text
            assert _metric(metrics, "webseed_over_capacity_total") == 3
            assert _metric(metrics, 'webseed_http_requests_total{status="503"}') == 3
            # The refused ranged GET (the queued one is counted when it is answered).
            assert _metric(metrics, "webseed_range_requests_total") == 1
            stats = c.get(f"{url}/.well-known/webseed/stats").json()
            assert stats["refused_over_capacity"] == 3
            assert stats["slots"] == {"capacity": 1, "in_use": 1, "waiting": 1}
        # The queued request was not disturbed: it got the slot when the hog left.
        assert out["waiter"] == 206
        assert not app.state.peer.pool.saturated
        assert c.get(f"{url}/no-such.bin").status_code == 404


class Ranks:
    """A ranking policy: contributors by what they gave; strangers by a scripted sequence."""

    def __init__(self, given: dict[str, float], strangers: list[float]) -> None:
        self.given = given
        self.strangers = strangers
        self.calls: list[str] = []

    def rank(self, requester: Requester) -> float:
        self.calls.append(requester.peer)
        if requester.peer:
            return self.given.get(requester.peer, 0.0)
        return self.strangers.pop(0) if self.strangers else 0.0

    def served(self, requester: Requester, nbytes: int) -> None:
        pass


def test_a_contributor_still_goes_first(bigrepo: Path) -> None:
    me = PeerIdentity.generate()
    policy = Ranks({me.peer_id: 10.0}, strangers=[0.0, 0.0])
    app = create_app(bigrepo, slots=1, max_wait=5.0, policy=policy, refuse_hold=HOLD)
    app.state.peer.pool.queue_limit = 1
    with running(app) as url:
        with saturated(app, url) as out:
            # An anonymous newcomer ranks no higher than the waiter: fast 503.
            assert httpx.get(f"{url}/small.bin", timeout=20).status_code == 503
            # A signed contributor is not short-cut: it outranks the waiter and takes its place.
            vip = _get(f"{url}/small.bin", out, "vip", auth=PeerAuth(me))
            _until(lambda: "waiter" in out, "the waiter was not evicted")
            assert out["waiter"] == 503
        vip.join(20)
    assert out["vip"] == 200
    assert policy.calls == ["", "", me.peer_id]


def test_an_optimistic_stranger_is_ranked_once(bigrepo: Path) -> None:
    policy = Ranks({}, strangers=[0.0, 100.0])  # the second stranger draws an optimistic rank
    app = create_app(bigrepo, slots=1, max_wait=5.0, policy=policy, refuse_hold=HOLD)
    app.state.peer.pool.queue_limit = 1
    with running(app) as url:
        with saturated(app, url) as out:
            lucky = _get(f"{url}/small.bin", out, "lucky")
            _until(lambda: "waiter" in out, "the waiter was not evicted")
            assert out["waiter"] == 503
        lucky.join(20)
    assert out["lucky"] == 200
    # Ranked by the gate only: the queue used that rank instead of drawing again.
    assert policy.calls == ["", ""]


def test_a_queue_refusal_is_remembered_for_the_connection(bigrepo: Path) -> None:
    from webseed.server.overload import OverloadGate

    app = create_app(bigrepo, slots=1, max_wait=0.2, refuse_hold=HOLD)
    with running(app) as url, httpx.Client(timeout=20) as c:
        gate = app.middleware_stack
        while not isinstance(gate, OverloadGate):
            gate = gate.app  # type: ignore[union-attr]
        with httpx.Client(timeout=20) as hog, hog.stream("GET", f"{url}/huge.bin") as stuck:
            assert stuck.status_code == 200
            r = c.get(f"{url}/small.bin")  # queued, the wait runs out: 503 the normal way
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            # The gate notes the refusal after the app returns, which may be just after
            # the client has read the 503: wait for it rather than race it.
            _until(lambda: len(gate._last) == 1, "the refusal was not remembered")
