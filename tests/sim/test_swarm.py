"""The driver with the real scheduler: exact small cases, faults, reproducibility."""

import json
from pathlib import Path

import pytest

from peer.simulate import cli
from peer.simulate.loop import SimulationError
from peer.simulate.report import build_report, plot, write_json
from peer.simulate.scenarios import GIB, MIB, SCENARIOS, Params, Scenario, chunk_size_for, get
from peer.simulate.scenarios import register as register_scenario
from peer.simulate.swarm import NodeSpec, SimConfig, Swarm
from peer.simulate.upload import FairShare, SlotLimit

MB = 1e6


def _two_peers(latency: float) -> Swarm:
    sw = Swarm(40 * MIB, MIB, seed=3, config=SimConfig(upload_policy=lambda s: FairShare()))
    sw.add(NodeSpec("seed", "seed", up=10 * MB, down=10 * MB, latency=latency))
    sw.add(NodeSpec("peer", "leecher", up=1 * MB, down=100 * MB, latency=latency))
    return sw


def test_two_peers_one_link_exact_completion() -> None:
    # 40 MiB at 10 MB/s with no latency: the uplink is never idle, so 4.194304 s exactly.
    sw = _two_peers(0.0)
    sw.run()
    peer = sw.nodes["peer"]
    assert peer.done_at == pytest.approx(40 * MIB / (10 * MB), rel=1e-9)
    assert sw.bytes_by_role["seed"] == pytest.approx(40 * MIB)
    r = build_report(sw, "two", 3, 0.0)
    assert r.kumar_ross_bound_s == pytest.approx(40 * MIB / (10 * MB))
    assert r.bound_ratio == pytest.approx(1.0)
    assert r.origin_share == 1.0 and r.corrupt_accepted == 0 and r.missing_at_finish == 0


def test_two_peers_with_latency_costs_exactly_one_round_trip() -> None:
    # 25 ms one way each: the first byte comes one RTT (100 ms) after the request.
    sw = _two_peers(0.025)
    sw.run()
    ideal = 40 * MIB / (10 * MB)
    done = sw.nodes["peer"].done_at
    assert done is not None
    assert done == pytest.approx(ideal + 0.1, rel=1e-9)  # no bubble between requests


def test_slot_limit_answers_busy_and_still_finishes() -> None:
    cfg = SimConfig(upload_policy=lambda s: SlotLimit(1, 0.5))
    sw = Swarm(16 * MIB, MIB, seed=1, config=cfg)
    sw.add(NodeSpec("seed", "seed", up=10 * MB, down=10 * MB))
    for i in range(4):
        sw.add(NodeSpec(f"p{i}", up=5 * MB, down=50 * MB))
    sw.run()
    assert sw.busy_answers > 0
    assert all(n.done_at is not None for n in sw.nodes.values() if n.role == "leecher")


def _run(name: str, peers: int = 12, size: int = 64 * MIB, seed: int = 1, **kw: object):
    return cli.run(name, peers, size, seed, chunk_size=2 * MIB, **kw)


def test_same_seed_same_result_other_seed_other_result() -> None:
    a = _run("flash-crowd", seed=5)
    b = _run("flash-crowd", seed=5)
    c = _run("flash-crowd", seed=6)
    assert a.completion_times == b.completion_times
    assert a.timeseries == b.timeseries
    assert a.scheduler_events == b.scheduler_events
    assert a.completion_times != c.completion_times


def test_flash_crowd_near_the_bound() -> None:
    r = _run("flash-crowd", peers=20)
    assert r.completed == 20 and r.incomplete == 0
    moved = r.bytes_from_peers + r.bytes_from_seeds + r.bytes_from_mirrors
    # Every byte moved is either a verified first copy of a chunk or counted as wasted.
    assert moved * (1 - r.wasted_share) == pytest.approx(20 * r.size, rel=1e-6)
    assert 0.5 < r.bound_ratio < 1.6
    assert r.origin_share < 0.5
    assert r.corrupt_received == 0 and r.banned == 0


def test_malicious_peers_are_banned_and_nothing_corrupt_is_accepted() -> None:
    r = _run("malicious-10", peers=20)
    assert r.completed == 18
    assert r.corrupt_received > 0
    assert r.corrupt_accepted == 0 and r.missing_at_finish == 0
    assert r.malicious_served >= 1
    assert r.malicious_banned == r.malicious_served
    assert r.corrupt_pairs_unbanned == 0
    assert r.honest_banned == 0


def test_partition_splits_and_heals() -> None:
    # Half the peers lose the seed and the other half for 20..80 s; all still finish,
    # and the run outlasts the heal (the cut side could not finish alone).
    p = Params(peers=12, size=256 * MIB, chunk_size=4 * MIB, seed=2)
    sw = SCENARIOS["partition"].build(p)
    cut = [n for n in list(sw.nodes)[1:7]]
    seen: dict[str, bool] = {}

    def probe() -> None:
        seen["split"] = sw.partitioned(cut[0], "seed0")

    sw.at(50.0, probe)
    sw.run()
    r = build_report(sw, "partition", 2, 0.0)
    assert seen["split"] is True and not sw.partitioned(cut[0], "seed0")
    assert r.completed == 12
    assert r.max_completion_s > 80.0
    assert min(sw.nodes[n].done_at or 0 for n in cut) > 80.0


def test_stalling_peers_do_not_stop_the_download() -> None:
    r = _run("stalling", peers=20)
    assert r.completed == 18 and r.incomplete == 0
    assert r.banned == 0


def test_nat_peers_download_but_upload_nothing() -> None:
    p = Params(peers=15, size=64 * MIB, chunk_size=2 * MIB, seed=4)
    sw = SCENARIOS["nat-heavy"].build(p)
    sw.run()
    nat = [n for n in sw.nodes.values() if n.role == "leecher" and not n.spec.reachable]
    assert nat and all(n.done_at is not None for n in nat)
    assert all(n.up_bytes == 0 for n in nat)


def test_mirror_down_and_slow() -> None:
    p = Params(peers=10, size=512 * MIB, chunk_size=8 * MIB, seed=1)
    sw = SCENARIOS["mirror-only"].build(p)
    sw.run()
    r = build_report(sw, "mirror-only", 1, 0.0)
    assert r.completed == 10
    assert r.origin_share == 1.0
    assert sw.failed_requests > 0  # transfers from mirror0 were reset when it went down
    assert sw.nodes["mirror0"].up_bytes > 0 and sw.nodes["mirror2"].up_bytes > 0


def test_mirror_fallback_after_the_seed_leaves() -> None:
    p = Params(peers=6, size=512 * MIB, chunk_size=8 * MIB, seed=1)
    sw = SCENARIOS["mirror-fallback"].build(p)
    sw.run()
    r = build_report(sw, "mirror-fallback", 1, 0.0)
    assert r.completed == 6
    assert r.bytes_from_mirrors > 0


def test_churn_some_give_up_others_finish() -> None:
    r = _run("steady-churn", peers=30, size=128 * MIB)
    assert r.completed + r.incomplete == 30
    assert r.completed >= 20
    assert r.corrupt_accepted == 0


def test_cli_json_table_list_plot_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--scenario", "flash-crowd", "--peers", "4", "--size", "16MiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "mean_completion_s",
        "max_completion_s",
        "kumar_ross_bound_s",
        "bound_ratio",
        "origin_share",
        "corrupt_accepted",
        "banned",
    ):
        assert key in out
    assert (
        cli.main(["--peers", "3", "--size", "8M", "--chunk-size", "1M", "--plot", str(tmp_path)])
        == 0
    )
    assert "Kumar-Ross bound" in capsys.readouterr().out
    assert (tmp_path / "sim-flash-crowd-cdf.png").stat().st_size > 1000
    assert (tmp_path / "sim-flash-crowd-origin.png").exists()
    assert cli.main(["--list"]) == 0
    assert "mirror-only" in capsys.readouterr().out
    assert cli.main(["--scenario", "nope"]) == 2
    assert cli.main(["--size", "lots"]) == 2
    assert cli.main(["--size", "-1"]) == 2


def test_sizes_registry_and_json(tmp_path: Path) -> None:
    assert cli.parse_size("1GiB") == GIB
    assert cli.parse_size("512M") == 512 * MIB
    assert cli.parse_size("4096") == 4096
    assert cli.parse_size("1.5k") == 1536
    assert chunk_size_for(10_000, GIB) == 32 * MIB
    assert chunk_size_for(10, GIB) == 4 * MIB
    with pytest.raises(SimulationError):
        get("nope")
    with pytest.raises(SimulationError):
        register_scenario(Scenario("flash-crowd", "dup", SCENARIOS["flash-crowd"].build))
    r = _run("flash-crowd", peers=3, size=8 * MIB)
    write_json(r, tmp_path / "r" / "x.json")
    assert json.loads((tmp_path / "r" / "x.json").read_text())["peers"] == 3
    assert "origin share" in r.table()
    assert len(plot(r, tmp_path / "plots")) == 2


def test_bad_swarms() -> None:
    with pytest.raises(SimulationError):
        Swarm(0, 1)
    sw = Swarm(10, 1)
    sw.add(NodeSpec("a"))
    with pytest.raises(SimulationError):
        sw.add(NodeSpec("a"))
    with pytest.raises(SimulationError):
        sw.add(NodeSpec("b", role="wizard"))


def test_module_entry_point_imports() -> None:
    import importlib

    assert importlib.import_module("peer.simulate.__main__").main is cli.main
