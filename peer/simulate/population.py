"""Who is in the swarm: link capacities and latencies drawn from a residential mix.

The default mix is a rough picture of residential broadband: mostly cable and
fibre, some DSL and mobile, strongly asymmetric except for symmetric fibre.
The numbers are illustrative (not a survey); what matters for the swarm is the
spread of upload capacity and the down/up asymmetry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MBIT = 1_000_000 / 8  # bytes per second in one Mbit/s


@dataclass(frozen=True)
class Tier:
    """One kind of access link: share of the population, down and up in Mbit/s."""

    name: str
    weight: float
    down_mbit: float
    up_mbit: float


#: Residential broadband mix: (name, share, down Mbit/s, up Mbit/s).
RESIDENTIAL: tuple[Tier, ...] = (
    Tier("dsl", 0.10, 50, 10),
    Tier("cable", 0.30, 200, 20),
    Tier("cable-fast", 0.20, 500, 50),
    Tier("fibre", 0.25, 500, 250),
    Tier("fibre-gig", 0.10, 1000, 500),
    Tier("mobile", 0.05, 100, 20),
)


@dataclass(frozen=True)
class Link:
    """Capacities (bytes/s) and one-way access latency (s) of one host."""

    tier: str
    down: float
    up: float
    latency: float


def draw_link(
    rng: random.Random,
    mix: tuple[Tier, ...] = RESIDENTIAL,
    latency: tuple[float, float] = (0.005, 0.040),
) -> Link:
    """Draw one host's link: a tier by weight, latency uniform in ``latency``."""
    tier = rng.choices(mix, weights=[t.weight for t in mix])[0]
    return Link(
        tier=tier.name,
        down=tier.down_mbit * MBIT,
        up=tier.up_mbit * MBIT,
        latency=rng.uniform(*latency),
    )
