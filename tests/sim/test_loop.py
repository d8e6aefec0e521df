"""The event loop: time order, ties, cancellation, bounds."""

import pytest

from peer.simulate.loop import EventLoop, SimulationError


def test_fires_in_time_order_and_ties_in_insertion_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    for when, tag in [(2.0, "c"), (1.0, "a"), (1.0, "b"), (0.5, "z")]:
        loop.call_at(when, lambda t=tag: seen.append((loop.now, t)))
    assert loop.run() == 2.0
    assert seen == [(0.5, "z"), (1.0, "a"), (1.0, "b"), (2.0, "c")]
    assert loop.fired == 4


def test_cancel_until_stop_and_budget() -> None:
    loop = EventLoop()
    seen: list[int] = []
    t = loop.call_later(1.0, seen.append, 1)
    t.cancel()
    loop.call_later(2.0, seen.append, 2)
    loop.call_later(5.0, seen.append, 5)
    assert loop.run(until=3.0) == 3.0
    assert seen == [2]
    assert loop.pending() == 1
    loop.call_later(0.0, loop.stop)
    loop.call_later(0.5, seen.append, 99)
    loop.run()
    assert seen == [2] and loop.now == 3.0
    loop.run(max_events=1)
    assert seen == [2, 99]
    loop.run()
    assert seen == [2, 99, 5]
    assert loop.run(until=10.0) == 10.0


def test_no_time_travel() -> None:
    loop = EventLoop()
    loop.call_at(1.0, lambda: None)
    loop.run()
    with pytest.raises(SimulationError):
        loop.call_at(0.5, lambda: None)
    loop.call_at(1.0 - 1e-12, lambda: None)  # rounding noise is clamped to now
    loop.run()


def test_seeded_randomness_is_reproducible() -> None:
    assert EventLoop(7).rng.random() == EventLoop(7).rng.random()
    assert EventLoop(7).rng.random() != EventLoop(8).rng.random()


def test_cancelled_timers_are_swept_without_changing_the_order() -> None:
    loop = EventLoop()
    seen: list[int] = []
    keep = []
    for i in range(10_000):
        t = loop.call_at(1.0 + (i % 7), seen.append, i)
        if i % 10:
            t.cancel()  # most timers are re-armed elsewhere, as flow timers are
        else:
            keep.append((1.0 + (i % 7), i))
    assert loop.pending() < 5_000  # swept when the heap doubled
    loop.run()
    assert seen == [i for _, i in sorted(keep)]
