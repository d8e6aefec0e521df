"""The sans-I/O mirror policy: which mirrors to use, in what order, and why.

:class:`MirrorPolicy` is a pure state machine in the style of h11: events in
(probe results, bytes transferred, failures, each with the caller's ``now``),
decisions out (:meth:`MirrorPolicy.rank`, :meth:`MirrorPolicy.candidates`). It
reads no clock and does no I/O, so the download engine and the simulator can
drive the same code.

Ranking: every mirror gets an *estimated time* to fetch a reference amount of
data, ``rtt + reference_bytes / rate``. Before any measurement, ``rtt`` and
``rate`` are seeded from geography (distance → RTT) and the announced capacity;
each measured value replaces its seed. So measured performance overrides
geography whenever they disagree (mirrorbits #113: nearest is not fastest).
Health gates the result: UP mirrors come first, then DEGRADED ones, then DOWN
ones whose back-off has expired (probation); DOWN ones still backing off are
left out, and a mirror that served bad bytes is kept away longest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from geo.continents import continent_of
from geo.health import Failure, HealthConfig, MirrorHealth, State
from geo.mirror import Mirror
from geo.proximity import Place, Proximity, merge_places, proximity


@dataclass
class PolicyConfig:
    """Weights of the ranking; the defaults are for ordinary internet mirrors."""

    reference_bytes: int = 4 * 1024 * 1024  # one typical chunk
    base_rtt: float = 0.005  # seconds: the floor of a seeded RTT
    rtt_per_km: float = 2.0e-5  # ~1 ms of round trip per 50 km of fibre path
    default_rate: float = 4.0e6  # bytes/s assumed for an unmeasured mirror
    health: HealthConfig = field(default_factory=HealthConfig)


@dataclass(frozen=True)
class Ranked:
    """One mirror's place in the ranking, with the numbers behind it."""

    mirror: Mirror
    estimate: float  # seconds to fetch reference_bytes (inf when gated out)
    state: State
    usable: bool
    proximity: Proximity
    rtt: float
    rate: float
    measured: bool
    reason: str


class MirrorPolicy:
    """Pure ranking and health bookkeeping for a set of mirrors."""

    def __init__(
        self,
        mirrors: Iterable[Mirror] = (),
        *,
        client: Place | None = None,
        config: PolicyConfig | None = None,
    ) -> None:
        self.config = config or PolicyConfig()
        self.client = client
        self._mirrors: dict[str, Mirror] = {}
        self._places: dict[str, Place | None] = {}
        self._health: dict[str, MirrorHealth] = {}
        self._order: dict[str, int] = {}
        for m in mirrors:
            self.add(m)

    # ------------------------------------------------------------------ membership

    def add(self, mirror: Mirror, place: Place | None = None) -> None:
        """Add (or update) a mirror; ``place`` is its GeoIP lookup, merged with what it declares."""
        declared = None
        if mirror.country is not None or mirror.continent is not None or mirror.lat is not None:
            declared = Place(
                country=mirror.country,
                continent=mirror.continent or continent_of(mirror.country),
                lat=mirror.lat,
                lon=mirror.lon,
            )
        self._mirrors[mirror.url] = mirror
        self._places[mirror.url] = merge_places(declared, place)
        self._health.setdefault(mirror.url, MirrorHealth(config=self.config.health))
        self._order.setdefault(mirror.url, len(self._order))

    def set_place(self, url: str, place: Place | None) -> None:
        """Record the GeoIP lookup of a mirror's address (found by the I/O side)."""
        self.add(self._mirrors[url], place)

    def remove(self, url: str) -> None:
        for table in (self._mirrors, self._places, self._health, self._order):
            table.pop(url, None)

    @property
    def mirrors(self) -> list[Mirror]:
        return list(self._mirrors.values())

    def health(self, url: str) -> MirrorHealth:
        return self._health[url]

    def place(self, url: str) -> Place | None:
        return self._places[url]

    # ------------------------------------------------------------------ events

    def on_success(
        self, url: str, now: float, *, rtt: float | None = None, nbytes: int = 0, seconds: float = 0
    ) -> None:
        """A probe or request succeeded: time to first byte ``rtt``, ``nbytes`` in ``seconds``."""
        if url in self._health:
            self._health[url].record_success(now, rtt=rtt, nbytes=nbytes, seconds=seconds)

    def on_transfer(self, url: str, nbytes: int, seconds: float) -> None:
        """Bytes of the download's own traffic arrived (updates the measured rate)."""
        if url in self._health:
            self._health[url].record_transfer(nbytes, seconds)

    def on_failure(self, url: str, kind: Failure, now: float, detail: str = "") -> None:
        """A request to ``url`` failed."""
        if url in self._health:
            self._health[url].record_failure(now, kind, detail)

    # ------------------------------------------------------------------ decisions

    def _rank_one(self, url: str, now: float) -> Ranked:
        cfg = self.config
        mirror = self._mirrors[url]
        h = self._health[url]
        prox = proximity(self.client, self._places[url])
        seeded_rtt = cfg.base_rtt + prox.distance_km * cfg.rtt_per_km
        seeded_rate = mirror.capacity or cfg.default_rate
        rtt = h.rtt if h.rtt is not None else seeded_rtt
        rate = h.rate if h.rate is not None else seeded_rate
        measured = h.rtt is not None or h.rate is not None
        estimate = rtt + cfg.reference_bytes / max(rate, 1.0)
        usable = h.usable(now)
        basis = "measured" if measured else f"seeded by {prox.measured_by}"
        if not usable:
            reason = f"skipped: {h.describe()}, retry in {h.retry_at - now:.1f}s"
            estimate = math.inf
        elif h.state is State.DOWN:
            reason = f"probation after {h.describe()}"
        elif h.state is State.DEGRADED:
            reason = f"{basis}, after healthy mirrors: {h.describe()}"
        else:
            reason = basis
        return Ranked(mirror, estimate, h.state, usable, prox, rtt, rate, measured, reason)

    def rank(self, now: float) -> list[Ranked]:
        """Every mirror, best first; unusable ones last (``usable`` False, estimate inf).

        Health gates first: UP mirrors, then DEGRADED, then DOWN ones on
        probation, then the unusable. Within a group, the estimate decides;
        ties (e.g. nothing measured, no GeoIP) fall back to the declared
        priority, then to the order the mirrors were listed in.
        """
        ranked = [self._rank_one(url, now) for url in self._mirrors]
        group = {State.UP: 0, State.DEGRADED: 1, State.DOWN: 2}

        def key(r: Ranked) -> tuple[int, float, int, int]:
            prio = r.mirror.priority if r.mirror.priority is not None else 1 << 30
            gate = group[r.state] if r.usable else 3
            # Rounded so that float noise does not override the declared priority.
            estimate = round(r.estimate, 9)
            return (gate, estimate, prio, self._order[r.mirror.url])

        ranked.sort(key=key)
        return ranked

    def candidates(self, now: float, k: int = 3, exclude: Sequence[str] = ()) -> list[Mirror]:
        """The best ``k`` usable mirrors to race, best first."""
        out = []
        for r in self.rank(now):
            if not r.usable or r.mirror.url in exclude:
                continue
            out.append(r.mirror)
            if len(out) >= k:
                break
        return out

    def report(self, now: float) -> list[dict[str, object]]:
        """The ranking as plain dicts (for ``--json`` and the download report)."""
        rows: list[dict[str, object]] = []
        for pos, r in enumerate(self.rank(now), start=1):
            h = self._health[r.mirror.url]
            place = self._places[r.mirror.url]
            rows.append(
                {
                    "rank": pos,
                    "url": r.mirror.url,
                    "source": r.mirror.source,
                    "state": r.state.value,
                    "usable": r.usable,
                    "estimate_s": None if math.isinf(r.estimate) else round(r.estimate, 6),
                    "rtt_ms": round(r.rtt * 1000, 3),
                    "rate_Bps": round(r.rate, 1),
                    "measured": r.measured,
                    "country": place.country if place else None,
                    "distance_km": round(r.proximity.distance_km, 1),
                    "tier": r.proximity.tier,
                    "successes": h.successes,
                    "failures": h.failures,
                    "bytes_served": h.bytes_served,
                    "reason": r.reason,
                }
            )
        return rows
