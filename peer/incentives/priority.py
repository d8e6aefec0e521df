"""Who gets an upload slot first: a pure policy (no I/O, no clock reads).

PropShare-like: when a peer is at capacity, contributors get slots in
proportion to their contribution (credit, from :mod:`.ledger` and
:mod:`.receipts`); a share of slots (``optimistic_share``) is kept for
requesters without credit so newcomers can start; and the policy is work
conserving: a free slot is never left idle while anyone waits, so free riders
are served whenever capacity is spare and are never starved when the swarm is
idle.

Two faces of the same rules:

* :meth:`SlotPolicy.choose` hands out discrete slots to waiting requests
  (the real server's queue);
* :meth:`SlotPolicy.allocate` splits a rate among peers (the flow simulator).

The caller passes ``now`` and the credits; the policy keeps only a small,
decaying history of its own grants so that proportional sharing holds over time.

Credit is signed: ``> 0`` a contributor (bytes it gave us, decayed); ``0`` (or
absent) a *stranger*; ``< 0`` a *debtor*: a requester that has already taken
more than a bootstrap allowance from us and given nothing back. Optimistic
slots exist so that strangers can start (as BitTorrent's optimistic unchoke);
a debtor has had its start, so it is served only from spare capacity. A
debtor can shed its debt by minting a new identity (whitewashing); that makes
it a stranger again, competing for the optimistic share only: the
contributors' share is the same either way.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A request waiting for an upload slot."""

    key: Hashable
    peer: str  # verified peer id; "" for anonymous requesters
    arrived: float


def waterfill(
    capacity: float, demand: Mapping[str, float], weight: Mapping[str, float]
) -> dict[str, float]:
    """Split ``capacity`` by ``weight``, never above ``demand``; redistribute the excess."""
    alloc = dict.fromkeys(demand, 0.0)
    # A list, not a set: iteration order must not depend on string hashing, or float
    # sums (and so seeded simulations) differ from one process to the next.
    active = [p for p in demand if demand[p] > 0 and weight.get(p, 0.0) > 0]
    left = capacity
    for _ in range(len(active) + 1):  # each round saturates at least one peer or ends
        if left <= 1e-12 or not active:
            break
        total = sum(weight[p] for p in active)
        saturated: set[str] = set()
        spent = 0.0
        for p in active:
            give = left * weight[p] / total
            room = demand[p] - alloc[p]
            if give >= room:
                give = room
                saturated.add(p)
            alloc[p] += give
            spent += give
        left -= spent
        if not saturated:
            break
        active = [p for p in active if p not in saturated]
    return alloc


class SlotPolicy:
    """PropShare slots plus optimistic slots for newcomers; work conserving.

    ``optimistic_share`` of the grants (or of the rate) goes to requesters with
    no credit, oldest first; the rest to contributors in proportion to credit.
    Whatever one class cannot use goes to the other.
    """

    def __init__(self, optimistic_share: float = 0.2, memory: float = 600.0) -> None:
        if not 0.0 <= optimistic_share <= 1.0 or memory <= 0:
            raise ValueError("optimistic_share in [0, 1], memory > 0")
        self.optimistic_share = optimistic_share
        self.memory = memory
        self._granted: dict[str, float] = {}  # decayed grants per contributor
        self._stamp: float | None = None
        self._optimistic_debt = 0.0

    def _decay(self, now: float) -> None:
        if self._stamp is not None and now > self._stamp:
            f = math.exp(-(now - self._stamp) / self.memory)
            self._granted = {p: g * f for p, g in self._granted.items() if g * f > 1e-3}
        self._stamp = now if self._stamp is None else max(now, self._stamp)

    def choose(
        self, waiting: Sequence[Waiting], now: float, *, free: int, credit: Mapping[str, float]
    ) -> list[Waiting]:
        """Which waiting requests get the ``free`` slots now, in grant order."""
        self._decay(now)
        queue = sorted(waiting, key=lambda w: (w.arrived, str(w.key)))
        grants: list[Waiting] = []
        for _ in range(max(0, free)):
            if not queue:
                break
            contributors = [w for w in queue if w.peer and credit.get(w.peer, 0.0) > 0]
            strangers = [w for w in queue if credit.get(w.peer, 0.0) == 0 or not w.peer]
            self._optimistic_debt = min(1.0, self._optimistic_debt + self.optimistic_share)
            if strangers and (self._optimistic_debt >= 1.0 or not contributors):
                pick = strangers[0]  # oldest newcomer / free rider
                self._optimistic_debt = max(0.0, self._optimistic_debt - 1.0)
            elif not contributors:
                pick = queue[0]  # only debtors wait: serve them (work conserving)
            else:
                # Proportional share: the contributor furthest below its share goes next.
                def lag(w: Waiting) -> tuple[float, float]:
                    return ((self._granted.get(w.peer, 0.0) + 1.0) / credit[w.peer], w.arrived)

                pick = min(contributors, key=lag)
                self._granted[pick.peer] = self._granted.get(pick.peer, 0.0) + 1.0
            grants.append(pick)
            queue.remove(pick)
        return grants

    def allocate(
        self, capacity: float, demand: Mapping[str, float], credit: Mapping[str, float]
    ) -> dict[str, float]:
        """Split an upload rate among peers wanting at most ``demand[peer]`` each."""
        contrib = {p: d for p, d in demand.items() if credit.get(p, 0.0) > 0}
        newbies = {p: d for p, d in demand.items() if credit.get(p, 0.0) == 0}
        reserve = capacity * self.optimistic_share if contrib else capacity
        alloc = dict.fromkeys(demand, 0.0)
        alloc.update(waterfill(reserve if newbies else 0.0, newbies, dict.fromkeys(newbies, 1.0)))
        used = sum(alloc.values())
        prop = waterfill(capacity - used, contrib, {p: credit[p] for p in contrib})
        alloc.update(prop)
        # Work conservation: spare rate goes to anyone still below demand (debtors too), equally.
        spare = capacity - sum(alloc.values())
        if spare > 1e-9:
            room = {p: demand[p] - alloc[p] for p in demand}
            extra = waterfill(spare, room, dict.fromkeys(room, 1.0))
            for p, x in extra.items():
                alloc[p] += x
        return alloc

    def score(self, peer: str, credit: float, now: float) -> float:
        """A rank for priority queues that order by one number at enqueue time.

        Contributors rank ``credit / (1 + recent grants)``, so a big
        contributor goes first but each slot it gets lowers its next rank:
        over time slots follow credit (PropShare). Strangers rank 0, except
        that every ``1/optimistic_share``-th of them gets an optimistic rank
        above everyone (``inf``) so newcomers can start. Debtors rank -1:
        served when nobody else waits.
        """
        self._decay(now)
        if peer and credit > 0:
            return credit / (1.0 + self._granted.get(peer, 0.0))
        if credit < 0:
            return -1.0
        self._optimistic_debt += self.optimistic_share
        if self._optimistic_debt >= 1.0:
            self._optimistic_debt -= 1.0
            return math.inf
        return 0.0

    def note_grant(self, peer: str, now: float) -> None:
        """Record that ``peer`` was served a slot (feeds :meth:`score`)."""
        self._decay(now)
        if peer:
            self._granted[peer] = self._granted.get(peer, 0.0) + 1.0
