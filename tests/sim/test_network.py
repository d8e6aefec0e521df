"""The bandwidth model against hand-computed cases."""

import pytest

from peer.simulate.loop import EventLoop, SimulationError
from peer.simulate.network import Flow, Network


def _net() -> tuple[EventLoop, Network, dict[str, float]]:
    loop = EventLoop()
    done: dict[str, float] = {}
    return loop, Network(loop), done


def test_two_hosts_one_link_exact_completion() -> None:
    # 100 MB over an uplink of 10 MB/s into a downlink of 50 MB/s: 10 s exactly.
    loop, net, done = _net()
    net.add_host("seed", up=10e6, down=1e9)
    net.add_host("peer", up=1e6, down=50e6)

    def finish(f: Flow) -> None:
        done[f.data] = loop.now
        assert net.stop(f) == pytest.approx(100e6)

    net.start("seed", "peer", 100e6, finish, data="x")
    loop.run()
    assert done == {"x": pytest.approx(10.0, abs=1e-9)}


def test_downlink_bottleneck_and_progress() -> None:
    loop, net, done = _net()
    net.add_host("seed", up=10e6, down=0)
    net.add_host("peer", up=0, down=4e6)
    f = net.start("seed", "peer", 8e6, lambda f: done.setdefault("x", loop.now))
    loop.run(until=1.0)
    assert f.rate == 4e6
    assert f.progress(loop.now) == pytest.approx(4e6)
    loop.run()
    assert done["x"] == pytest.approx(2.0)


def test_max_min_of_three_flows() -> None:
    # Seed uplink 10 shared by a (downlink 2), b and c (downlinks 100): a is held to 2 by
    # its own downlink, b and c split the remaining 8 -> 4 each. Each moves 30 units:
    # b, c finish at 7.5; then a, which had 15 left, continues at 2 and ends at 15.
    loop, net, done = _net()
    net.add_host("s", 10, 100)
    for name, down in (("a", 2), ("b", 100), ("c", 100)):
        net.add_host(name, 1, down)

    def finish(f: Flow) -> None:
        done[f.data] = loop.now
        net.stop(f)

    for name in "abc":
        net.start("s", name, 30, finish, data=name)
    net.solve()
    assert sorted(f.rate for f in net.flows_of("s")) == [2, 4, 4]
    loop.run()
    assert done == {"a": pytest.approx(15.0), "b": pytest.approx(7.5), "c": pytest.approx(7.5)}


def test_two_uplinks_into_one_downlink() -> None:
    # u1=6, u2=2 into d=6: max-min gives flow2 its 2 and flow1 the other 4.
    _, net, _ = _net()
    net.add_host("u1", 6, 0)
    net.add_host("u2", 2, 0)
    net.add_host("d", 0, 6)
    f1 = net.start("u1", "d", 100, lambda f: None)
    f2 = net.start("u2", "d", 100, lambda f: None)
    net.solve()
    assert (f1.rate, f2.rate) == (4, 2)
    net.stop(f2)
    net.solve()
    assert f1.rate == 6


def test_capacity_change_stall_and_extend() -> None:
    loop, net, done = _net()
    net.add_host("m", 10, 10)
    net.add_host("p", 10, 100)
    f = net.start("m", "p", 100, lambda f: done.setdefault("first", loop.now))
    loop.call_at(5.0, net.set_capacity, "m", 5.0)  # 50 moved, 50 left at 5/s: 15 s
    loop.run()
    assert done["first"] == pytest.approx(15.0)
    net.extend(f, 20, lambda f: done.setdefault("second", loop.now))
    loop.call_at(16.0, net.set_cap, f, 0.0)  # stalled after 5 more
    loop.call_at(20.0, net.set_cap, f, float("inf"))
    loop.run()
    assert done["second"] == pytest.approx(23.0)
    net.stop(f)
    assert net.stop(f) == pytest.approx(120)
    with pytest.raises(SimulationError):
        net.extend(f, 1)
    net.set_cap(f, 1.0)  # ignored on a stopped flow
    net.set_capacity("p", down=1.0)
    net.solve()


def test_bad_hosts() -> None:
    _, net, _ = _net()
    net.add_host("a", 1, 1)
    with pytest.raises(SimulationError):
        net.add_host("a", 1, 1)
    with pytest.raises(SimulationError):
        net.add_host("b", -1, 1)
