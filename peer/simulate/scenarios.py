"""Named scenarios: who is in the swarm, which faults happen when.

Each scenario builds a :class:`~peer.simulate.swarm.Swarm` from a few
parameters; :data:`SCENARIOS` is the registry the CLI and the benchmark use.
Other work adds entries with :func:`register` (the incentives issue adds
``seeding-incentives``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .loop import SimulationError
from .network import INF
from .population import MBIT, draw_link
from .swarm import NodeSpec, SimConfig, Swarm

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class Params:
    """What a scenario is asked for: downloaders, artifact size, chunk size, seed."""

    peers: int = 100
    size: int = GIB
    chunk_size: int = 16 * MIB
    seed: int = 1
    #: Origin seed uplink (bytes/s).
    seed_up: float = 200 * MBIT
    config: SimConfig = field(default_factory=SimConfig)


@dataclass(frozen=True)
class Scenario:
    """A named, documented recipe for a swarm."""

    name: str
    description: str
    build: Callable[[Params], Swarm]
    #: Kinds of faults it exercises (for the report).
    faults: tuple[str, ...] = ()


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to the registry (a name may be registered once)."""
    if scenario.name in SCENARIOS:
        raise SimulationError(f"scenario {scenario.name!r} already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


def get(name: str) -> Scenario:
    """The scenario called ``name``."""
    try:
        return SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise SimulationError(f"unknown scenario {name!r} (known: {known})") from None


def _swarm(p: Params) -> Swarm:
    return Swarm(p.size, p.chunk_size, seed=p.seed, config=p.config)


def _origin(sw: Swarm, p: Params, n: int = 1) -> None:
    for i in range(n):
        sw.add(NodeSpec(f"seed{i}", "seed", up=p.seed_up, down=p.seed_up, latency=0.01))


def _leechers(
    sw: Swarm,
    n: int,
    *,
    prefix: str = "p",
    join: Callable[[int], float] | None = None,
    reachable: Callable[[int], bool] | None = None,
    linger: Callable[[int], float] | None = None,
    abort_after: Callable[[int], float | None] | None = None,
    role: str = "leecher",
) -> list[str]:
    names = []
    for i in range(n):
        link = draw_link(sw.rng)
        name = f"{prefix}{i}"
        sw.add(
            NodeSpec(
                name,
                role,
                up=link.up,
                down=link.down,
                latency=link.latency,
                reachable=reachable(i) if reachable else True,
                join=join(i) if join else sw.rng.uniform(0.0, 1.0),
                linger=linger(i) if linger else INF,
                abort_after=abort_after(i) if abort_after else None,
                tier=link.tier,
            )
        )
        names.append(name)
    return names


def flash_crowd(p: Params) -> Swarm:
    """Every downloader arrives within the first second; one origin seed; all stay."""
    sw = _swarm(p)
    _origin(sw, p)
    _leechers(sw, p.peers)
    return sw


def steady_churn(p: Params) -> Swarm:
    """Poisson arrivals over ten minutes; peers seed ~1 min then leave; 10% give up early."""
    sw = _swarm(p)
    _origin(sw, p)
    rate = p.peers / 600.0
    t = 0.0
    joins = []
    for _ in range(p.peers):
        t += sw.rng.expovariate(rate)
        joins.append(t)
    quitters = {i for i in range(p.peers) if sw.rng.random() < 0.1}
    _leechers(
        sw,
        p.peers,
        join=lambda i: joins[i],
        linger=lambda i: sw.rng.expovariate(1 / 60.0),
        abort_after=lambda i: sw.rng.uniform(10.0, 120.0) if i in quitters else None,
    )
    return sw


def partition(p: Params) -> Swarm:
    """Flash crowd; from 20 s to 80 s half the peers are cut off from the seed and the rest."""
    sw = _swarm(p)
    _origin(sw, p)
    names = _leechers(sw, p.peers)
    cut = names[: len(names) // 2]
    sw.at(20.0, sw.split, [[], cut])
    sw.at(80.0, sw.heal)
    return sw


def malicious(p: Params, fraction: float = 0.1, role: str = "malicious") -> Swarm:
    """Flash crowd in which ``fraction`` of the peers claim every chunk and serve garbage."""
    sw = _swarm(p)
    _origin(sw, p)
    bad = max(1, round(p.peers * fraction))
    _leechers(sw, p.peers - bad)
    _leechers(sw, bad, prefix="bad", role=role, join=lambda i: 0.0)
    return sw


def stalling(p: Params) -> Swarm:
    """Flash crowd in which 10% of the peers claim every chunk, accept requests and stall."""
    return malicious(p, 0.1, "staller")


def nat_heavy(p: Params) -> Swarm:
    """Flash crowd where 70% of the peers are behind NAT: they download but serve nobody."""
    sw = _swarm(p)
    _origin(sw, p)
    nat = {i for i in range(p.peers) if sw.rng.random() < 0.7}
    _leechers(sw, p.peers, reachable=lambda i: i not in nat)
    return sw


def mirror_only(p: Params) -> Swarm:
    """Three HTTP mirrors and no peer exchange; one mirror is down 30–90 s, one slows at 60 s."""
    cfg = replace(p.config, neighbors=0, mirrors_at_start=True)
    sw = Swarm(p.size, p.chunk_size, seed=p.seed, config=cfg)
    for i, mbit in enumerate((1000, 500, 200)):
        up = mbit * MBIT * max(1.0, p.peers / 100)
        sw.add(NodeSpec(f"mirror{i}", "mirror", up=up, down=up, latency=0.02))
    _leechers(sw, p.peers, reachable=lambda i: False)
    sw.at(30.0, sw.set_offline, "mirror0", True)
    sw.at(90.0, sw.set_offline, "mirror0", False)
    sw.at(60.0, sw.set_speed, "mirror1", 0.25)
    return sw


def mirror_fallback(p: Params) -> Swarm:
    """A seed, and a mirror used only once the scheduler falls back; the seed leaves at 30 s."""
    cfg = replace(p.config, mirrors_at_start=False)
    sw = Swarm(p.size, p.chunk_size, seed=p.seed, config=cfg)
    _origin(sw, p)
    sw.add(NodeSpec("mirror0", "mirror", up=1000 * MBIT, down=1000 * MBIT, latency=0.02))
    _leechers(sw, p.peers)
    sw.at(30.0, sw.leave, "seed0")
    return sw


for _s in (
    Scenario("flash-crowd", flash_crowd.__doc__ or "", flash_crowd),
    Scenario("steady-churn", steady_churn.__doc__ or "", steady_churn, ("churn",)),
    Scenario("partition", partition.__doc__ or "", partition, ("partition",)),
    Scenario("malicious-10", malicious.__doc__ or "", malicious, ("corrupt",)),
    Scenario("stalling", stalling.__doc__ or "", stalling, ("stall",)),
    Scenario("nat-heavy", nat_heavy.__doc__ or "", nat_heavy, ("nat",)),
    Scenario("mirror-only", mirror_only.__doc__ or "", mirror_only, ("mirror-down", "mirror-slow")),
    Scenario("mirror-fallback", mirror_fallback.__doc__ or "", mirror_fallback, ("seed-leaves",)),
):
    register(_s)


def chunk_size_for(peers: int, size: int) -> int:
    """A chunk size that keeps a run's event count manageable: at most ~``4e6 / peers``
    chunks per artifact, between 4 MiB and 64 MiB, a power of two."""
    target = max(1.0, 4e6 / max(1, peers) / 8)
    cs = 4 * MIB
    while cs < 64 * MIB and math.ceil(size / cs) > target:
        cs *= 2
    return cs
