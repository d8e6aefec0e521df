"""User-behaviour model and the ``seeding-incentives`` scenario (pure, seeded, virtual time).

A population of users downloads a series of releases. After completing one, a
user keeps seeding with a probability and for a duration that grow with what
seeding has *earned* them: the speed-up they saw on their own downloads
compared with users without credit. With incentives on, upload capacity is
shared by the real :class:`~peer.incentives.priority.SlotPolicy` (PropShare
plus optimistic share, work conserving); with incentives off, equally. The
same population (same seed) runs both ways; :func:`run_scenario` reports them
side by side.

The network is a flow model (see ``docs/incentives.md`` for all assumptions):
each release has a swarm whose upload capacity is the sum of its seeders'
upload rate and a part of its downloaders' (they upload what they hold); a
downloader takes at most its download rate; the origin is a fallback of fixed
capacity that fills, equally, whatever demand the swarm leaves unmet.
Time advances in fixed steps. No I/O, no clock: the simulator (``peer.simulate``)
can call :func:`run_scenario` directly.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from .priority import SlotPolicy, waterfill

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Params:
    """Population, network and behaviour parameters (units: MB, MB/s, seconds)."""

    users: int = 300
    releases: int = 10
    release_interval: float = DAY
    size: float = 1000.0  # MB per release
    user_up: float = 0.2  # MB/s each user can upload
    user_down: float = 5.0  # MB/s each user can download
    origin: float = 2.0  # MB/s the origin serves in total
    arrival_mean: float = 3 * HOUR  # users fetch a release this long after it appears (exp.)
    dt: float = 120.0
    tail: float = 10 * DAY  # simulated time after the last release
    warmup: int = 2  # releases excluded from the statistics (no history yet)
    # Behaviour: p(seed) = altruism + sensitivity * gain; duration ~ Exp(base * (1 + boost*gain)).
    altruism_a: float = 2.0  # altruism ~ Beta(a, b): mean 2/7 ≈ 0.29
    altruism_b: float = 5.0
    base_seed_hours: float = 12.0
    boost: float = 10.0
    gain_saturation: float = 2.0  # a speed-up of this factor counts as the full gain (1.0)
    learning: float = 0.5  # weight of the latest experience in the user's gain estimate
    half_life: float = 7 * DAY  # credit decay, as the ledger
    optimistic_share: float = 0.05
    downloader_upload: float = 0.5  # share of user_up a downloader offers while downloading
    # A requester that took more than this (MB, decayed) and never uploaded anything is a
    # debtor: no optimistic share, spare capacity only (as the server's 64 MiB allowance).
    bootstrap_allowance: float = 64.0
    # Worst case for the debtor rule: free riders mint a fresh identity whenever in debt,
    # so they always look like strangers.
    whitewash: bool = False
    # What PropShare weighs by: "net" = decayed uploaded minus downloaded, positive part
    # (a download spends the credit); "gross" = decayed MB uploaded (an ablation: see docs).
    credit: str = "net"


@dataclass
class _User:
    altruism: float
    sensitivity: float
    gain: float = 0.0
    # Decayed balance: MB uploaded minus MB downloaded from peers (may go negative);
    # its positive part is the credit (see docs: the swarm's ledger-balance view).
    credit: float = 0.0
    credit_stamp: float = 0.0
    seeded_last: bool = False
    # Decayed MB uploaded (gross, never reduced by downloading): what the server's
    # ledger calls a peer's credit and what PropShare weighs by.
    given: float = 0.0
    given_stamp: float = 0.0

    def given_at(self, now: float, half_life: float) -> float:
        return self.given * math.exp2(-(now - self.given_stamp) / half_life)

    def add_given(self, mb: float, now: float, half_life: float) -> None:
        self.given = self.given_at(now, half_life) + mb
        self.given_stamp = now

    def balance_at(self, now: float, half_life: float) -> float:
        return self.credit * math.exp2(-(now - self.credit_stamp) / half_life)

    def credit_at(self, now: float, half_life: float) -> float:
        return max(0.0, self.balance_at(now, half_life))

    def add_credit(self, mb: float, now: float, half_life: float) -> None:
        self.credit = self.balance_at(now, half_life) + mb
        self.credit_stamp = now


@dataclass
class _Download:
    user: int
    release: int
    start: float
    contributor: bool
    got: float = 0.0


@dataclass
class Outcome:
    """What one run measured."""

    retention_1d: float
    retention_7d: float
    contributor_mean_s: float
    free_rider_mean_s: float
    free_rider_completed: float
    origin_share: float
    seeding_fraction: float
    downloads: int
    contributor_downloads: int
    free_rider_downloads: int
    timeline: list[tuple[float, float]] = field(default_factory=list)
    contributor_times: list[float] = field(default_factory=list)
    free_rider_times: list[float] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """Free-rider mean download time / contributor mean."""
        if self.contributor_mean_s <= 0 or math.isnan(self.contributor_mean_s):
            return float("nan")
        return self.free_rider_mean_s / self.contributor_mean_s


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def simulate(params: Params, *, incentives: bool, seed: int = 1) -> Outcome:
    """Run the population through ``params.releases`` releases; return its statistics."""
    rng = random.Random(seed)
    p = params
    users = [
        _User(rng.betavariate(p.altruism_a, p.altruism_b), rng.random()) for _ in range(p.users)
    ]
    # Arrivals are drawn up front from their own stream so both runs see the same schedule.
    arr_rng = random.Random(seed * 7919 + 1)
    arrivals = sorted(
        (r * p.release_interval + arr_rng.expovariate(1.0 / p.arrival_mean), r, u)
        for r in range(p.releases)
        for u in range(p.users)
    )
    policy = SlotPolicy(optimistic_share=p.optimistic_share)
    seeding: dict[int, dict[int, float]] = {}  # release -> user -> seeding ends at
    active: list[_Download] = []
    done: list[tuple[_Download, float]] = []
    seed_durations: list[float] = []
    fr_ref: dict[tuple[Any, ...], float] = {}  # per release and class: mean download time
    origin_mb = total_mb = 0.0
    timeline: list[tuple[float, float]] = []
    seed_until: dict[tuple[int, int], float] = {}
    end = (p.releases - 1) * p.release_interval + p.tail
    now, nxt = 0.0, 0
    while now < end:
        while nxt < len(arrivals) and arrivals[nxt][0] <= now:
            _, r, u = arrivals[nxt]
            nxt += 1
            active.append(_Download(u, r, now, users[u].credit_at(now, p.half_life) > 0))
        if not active:
            if nxt >= len(arrivals):
                break
            now = max(now + p.dt, math.floor(arrivals[nxt][0] / p.dt) * p.dt)
            continue
        by_release: dict[int, list[_Download]] = {}
        for d in active:
            by_release.setdefault(d.release, []).append(d)
        unmet: dict[int, float] = {}
        got: dict[int, float] = {}
        for r, downs in by_release.items():
            seeders = seeding.get(r, {})
            for u in [u for u, until in seeders.items() if until <= now]:
                del seeders[u]
            offer = {u: p.user_up for u in seeders}
            for d in downs:
                held = d.got / p.size
                if held > 0:
                    offer[d.user] = offer.get(d.user, 0.0) + p.user_up * p.downloader_upload * held
            capacity = sum(offer.values())
            demand = {
                str(i): min(p.user_down, (p.size - d.got) / p.dt) for i, d in enumerate(downs)
            }
            if incentives:
                credit = {
                    str(i): _signed_credit(users[d.user], now, p) for i, d in enumerate(downs)
                }
            else:
                credit = {}
            alloc = policy.allocate(capacity, demand, credit)
            served = sum(alloc.values())
            if served > 0:  # uploaders earn credit in proportion to what they offered
                for u, cap in offer.items():
                    users[u].add_credit(served * p.dt * cap / capacity, now, p.half_life)
                    users[u].add_given(served * p.dt * cap / capacity, now, p.half_life)
            for i, d in enumerate(downs):
                key = id(d)
                got[key] = alloc[str(i)]
                users[d.user].add_credit(-alloc[str(i)] * p.dt, now, p.half_life)
                unmet[key] = demand[str(i)] - alloc[str(i)]
        origin_alloc = waterfill(
            p.origin, {str(k): v for k, v in unmet.items()}, {str(k): 1.0 for k in unmet}
        )
        still: list[_Download] = []
        for d in active:
            from_origin = origin_alloc[str(id(d))]
            origin_mb += from_origin * p.dt
            total_mb += (got[id(d)] + from_origin) * p.dt
            d.got += (got[id(d)] + from_origin) * p.dt
            if d.got >= p.size - 1e-6:
                _complete(
                    d, now + p.dt, users, seeding, done, seed_durations, fr_ref, rng, p, seed_until
                )
            else:
                still.append(d)
        active = still
        now += p.dt
    # Fraction of users seeding at least one release, every 3 h of virtual time.
    sessions: dict[int, list[tuple[float, float]]] = {}
    for d, t in done:
        until = seed_until.get((d.user, d.release), t)
        if until > t:
            sessions.setdefault(d.user, []).append((t, until))
    for k in range(int(end // (3 * HOUR)) + 1):
        at = k * 3 * HOUR
        on = sum(1 for ss in sessions.values() if any(a <= at < b for a, b in ss))
        timeline.append((at / DAY, on / p.users))
    counted = [(d, t) for d, t in done if d.release >= p.warmup]
    contrib = [t - d.start for d, t in counted if d.contributor]
    free = [t - d.start for d, t in counted if not d.contributor]
    fr_started = sum(1 for d, _ in counted if not d.contributor) + sum(
        1 for d in active if not d.contributor and d.release >= p.warmup
    )
    durations = seed_durations
    return Outcome(
        retention_1d=_mean([1.0 if s >= DAY else 0.0 for s in durations]),
        retention_7d=_mean([1.0 if s >= 7 * DAY else 0.0 for s in durations]),
        contributor_mean_s=_mean(contrib),
        free_rider_mean_s=_mean(free),
        free_rider_completed=len(free) / fr_started if fr_started else float("nan"),
        origin_share=origin_mb / total_mb if total_mb else float("nan"),
        seeding_fraction=_mean([1.0 if s > 0 else 0.0 for s in durations]),
        downloads=len(counted),
        contributor_downloads=len(contrib),
        free_rider_downloads=len(free),
        timeline=timeline,
        contributor_times=contrib,
        free_rider_times=free,
    )


def _signed_credit(user: _User, now: float, p: Params) -> float:
    """What the swarm's SlotPolicy sees: credit, 0 for a stranger, -1 for a debtor."""
    balance = user.balance_at(now, p.half_life)
    credit = user.given_at(now, p.half_life) if p.credit == "gross" else max(0.0, balance)
    if credit > 1e-9:
        return credit
    if (
        balance < -p.bootstrap_allowance
        and user.given_at(now, p.half_life) <= 1e-9
        and not p.whitewash
    ):
        return -1.0  # took more than the allowance and never gave anything (as the server)
    return 0.0


def _complete(
    d: _Download,
    t: float,
    users: list[_User],
    seeding: dict[int, dict[int, float]],
    done: list[tuple[_Download, float]],
    seed_durations: list[float],
    fr_ref: dict[tuple[Any, ...], float],
    rng: random.Random,
    p: Params,
    seed_until: dict[tuple[int, int], float],
) -> None:
    """A download finished: the user learns what seeding earned, then decides to seed."""
    user = users[d.user]
    done.append((d, t))
    took = t - d.start
    # Running mean download time per release and class: key (release, contributor?).
    n, mean = (
        fr_ref.get((d.release, d.contributor, "n"), 0.0),
        fr_ref.get((d.release, d.contributor), 0.0),
    )
    fr_ref[(d.release, d.contributor)] = (mean * n + took) / (n + 1)
    fr_ref[(d.release, d.contributor, "n")] = n + 1
    # The client shows how much faster contributors downloaded the previous release than
    # users without credit (and the user's own experience, if it was a contributor):
    # that is what seeding is seen to earn. Without incentives it is about 1.
    fr, co = fr_ref.get((d.release - 1, False)), fr_ref.get((d.release - 1, True))
    observed = fr / co if fr and co else 1.0
    if d.contributor and fr:
        observed = (observed + fr / took) / 2
    gain = min(1.0, max(0.0, (observed - 1.0) / (p.gain_saturation - 1.0)))
    user.gain = (1 - p.learning) * user.gain + p.learning * gain
    p_seed = min(0.98, user.altruism + user.sensitivity * user.gain)
    if rng.random() < p_seed:
        mean = p.base_seed_hours * HOUR * (1.0 + p.boost * user.gain)
        duration = rng.expovariate(1.0 / mean)
    else:
        duration = 0.0
    user.seeded_last = duration > 0
    if d.release >= p.warmup:
        seed_durations.append(duration)
    if duration > 0:
        seeding.setdefault(d.release, {})[d.user] = t + duration
        seed_until[(d.user, d.release)] = t + duration


def run_scenario(params: Params | None = None, seed: int = 1) -> dict[str, Any]:
    """The ``seeding-incentives`` scenario: the same population with and without incentives."""
    params = params or Params()
    on = simulate(params, incentives=True, seed=seed)
    off = simulate(params, incentives=False, seed=seed)
    return {
        "scenario": "seeding-incentives",
        "seed": seed,
        "retention_1d_with": on.retention_1d,
        "retention_1d_without": off.retention_1d,
        "retention_7d_with": on.retention_7d,
        "retention_7d_without": off.retention_7d,
        "contributor_speedup": on.speedup,
        "contributor_speedup_without": off.speedup,
        "contributor_mean_s_with": on.contributor_mean_s,
        "free_rider_mean_s_with": on.free_rider_mean_s,
        "free_rider_completed": on.free_rider_completed,
        "free_rider_completed_without": off.free_rider_completed,
        "origin_share_with": on.origin_share,
        "origin_share_without": off.origin_share,
        "seeding_fraction_with": on.seeding_fraction,
        "seeding_fraction_without": off.seeding_fraction,
        "downloads_with": on.downloads,
        "contributor_downloads_with": on.contributor_downloads,
        "free_rider_downloads_with": on.free_rider_downloads,
        "timeline_with": on.timeline,
        "timeline_without": off.timeline,
        "params": asdict(params),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m peer.incentives.behaviour [--json] [--users N] [--releases N] [--seed S]``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--users", type=int, default=Params.users)
    ap.add_argument("--releases", type=int, default=Params.releases)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    result = run_scenario(Params(users=args.users, releases=args.releases), seed=args.seed)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        for key, value in result.items():
            if not isinstance(value, (dict, list)):
                sys.stdout.write(f"{key:32} {value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
