"""The gossip store: the bounded set of fresh, verified announcements a peer knows.

Defences (eclipse and spam resistance):

* everything is verified before it is kept (:func:`announce.parse`), and an
  identical announcement seen before is recognised by its digest and not
  verified twice;
* one announcement per identity (the newest ``issued`` wins);
* at most ``per_group`` identities per address range (/24 IPv4, /48 IPv6, or
  host name), and at most ``per_source`` new identities learned from one
  sender per call, so one host or subnet cannot flood the store;
* a global capacity; when full, a newcomer from an under-represented range
  evicts an entry of the most crowded range (never the other way round);
* expired entries are dropped on every access;
* what we hand out (:meth:`GossipStore.sample`) is spread round-robin over
  ranges, so an attacker's many identities do not dominate the answers.

:meth:`GossipStore.announcements` makes the store a ``PexSource`` for the
HTTP server (``webseed.server.pex``): our own announcement first, then a
diverse sample.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .announce import Announcement, parse
from .errors import AnnouncementError

#: What :meth:`GossipStore.add` did with an announcement.
ADDED, UPDATED, DUPLICATE, STALE, REJECTED, CAPPED, SELF = (
    "added",
    "updated",
    "duplicate",
    "stale",
    "rejected",
    "capped",
    "self",
)


@dataclass
class StoreLimits:
    """Bounds of a :class:`GossipStore`."""

    capacity: int = 2048
    per_group: int = 4
    per_source: int = 32
    seen_capacity: int = 8192


def _group_key(ann: Announcement, source: str) -> str:
    # A peer without URLs of its own (outbound-only) counts in its relay's range, or
    # in the range of whoever told us about it.
    groups = sorted(ann.groups)
    return groups[0] if groups else "src:" + source


class GossipStore:
    """Bounded, de-duplicated, fresh-only store of verified announcements.

    Thread-safe: the server's request handlers and the gossip loop share it.
    ``clock`` returns Unix seconds (injectable for tests and the simulator).
    """

    def __init__(
        self,
        limits: StoreLimits | None = None,
        *,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        self_peer: str = "",
    ) -> None:
        self.limits = limits or StoreLimits()
        self.clock = clock
        self.rng = rng or random.Random()
        self.self_peer = self_peer
        self.own: Announcement | None = None
        self._by_peer: dict[str, Announcement] = {}
        self._group: dict[str, str] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._sizes: Counter[str] = Counter()
        self._expired_at = float("-inf")
        #: Announcements added or updated, oldest first, for one consumer (the exchange).
        self.news: list[Announcement] = []
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    # -- our own announcement -------------------------------------------------
    def set_own(self, ann: Announcement) -> None:
        """The announcement this peer publishes about itself (always listed first)."""
        self.own = ann
        self.self_peer = ann.peer

    # -- adding -----------------------------------------------------------------
    def add_raw(self, data: bytes | Mapping[str, Any], source: str = "") -> str:
        """Verify and store one wire announcement; returns one of the verdict strings."""
        # De-duplication key: the signature names the signed body (Ed25519 is
        # deterministic), so an announcement seen and verified before is recognised
        # without re-encoding or re-verifying it. Only verified ones are remembered,
        # so a forgery reusing a known signature is at worst ignored as a duplicate.
        if isinstance(data, bytes):
            key = hashlib.sha256(data).digest()
        else:
            sig, peer = data.get("sig"), data.get("peer")
            if not isinstance(sig, str) or not isinstance(peer, str):
                self.counts[REJECTED] += 1
                return REJECTED
            key = hashlib.sha256(f"{peer}:{sig}".encode()).digest()
        if key in self._seen:
            self.counts[DUPLICATE] += 1
            return DUPLICATE
        now = self.clock()
        try:
            ann = parse(data, now)
        except AnnouncementError:
            self.counts[REJECTED] += 1
            return REJECTED
        verdict = self.add(ann, source)
        self._remember(key)
        self._remember(hashlib.sha256(f"{ann.peer}:{ann.sig}".encode()).digest())
        return verdict

    def add_many(self, items: Iterable[object], source: str = "") -> Counter[str]:
        """Add a received list; at most ``per_source`` new identities from one call."""
        verdicts: Counter[str] = Counter()
        for i, item in enumerate(items):
            if i >= self.limits.capacity:
                break
            if verdicts[ADDED] >= self.limits.per_source:
                verdicts[CAPPED] += 1
                continue
            if isinstance(item, dict):
                verdicts[self.add_raw(item, source)] += 1
            else:
                verdicts[REJECTED] += 1
        return verdicts

    def _remember(self, key: bytes) -> None:
        with self._lock:
            self._seen[key] = None
            while len(self._seen) > self.limits.seen_capacity:
                self._seen.popitem(last=False)

    def add(self, ann: Announcement, source: str = "") -> str:
        """Store an already verified announcement under the caps."""
        verdict = self._add(ann, source)
        self.counts[verdict] += 1
        return verdict

    def _add(self, ann: Announcement, source: str) -> str:
        now = self.clock()
        if not ann.fresh(now):
            return STALE
        if ann.peer == self.self_peer:
            return SELF
        with self._lock:
            self._expire(now)
            old = self._by_peer.get(ann.peer)
            if old is not None:
                if ann.issued <= old.issued:
                    return DUPLICATE if ann.issued == old.issued else STALE
                group = _group_key(ann, source)
                if group != self._group[ann.peer] and self._group_full(group):
                    return CAPPED
                self._by_peer[ann.peer] = ann
                self._set_group(ann.peer, group)
                self._news(ann)
                return UPDATED
            group = _group_key(ann, source)
            if self._group_full(group):
                return CAPPED
            if len(self._by_peer) >= self.limits.capacity and not self._evict_for(group):
                return CAPPED
            self._by_peer[ann.peer] = ann
            self._set_group(ann.peer, group)
            self._news(ann)
            return ADDED

    def _group_full(self, group: str) -> bool:
        return self._sizes[group] >= self.limits.per_group

    def _set_group(self, peer: str, group: str) -> None:
        old = self._group.get(peer)
        if old is not None:
            self._sizes[old] -= 1
        self._group[peer] = group
        self._sizes[group] += 1

    def _drop(self, peer: str) -> None:
        self._by_peer.pop(peer, None)
        group = self._group.pop(peer, None)
        if group is not None:
            self._sizes[group] -= 1
            if not self._sizes[group]:
                del self._sizes[group]

    def _news(self, ann: Announcement) -> None:
        self.news.append(ann)
        if len(self.news) > 2 * self.limits.capacity:  # nobody is reading: keep the newest
            del self.news[: len(self.news) - self.limits.capacity]

    def _evict_for(self, group: str) -> bool:
        sizes = self._sizes
        crowded, size = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))
        if size <= sizes.get(group, 0) + 1:
            return False  # the newcomer's range is no less represented: keep what we have
        victims = [p for p, g in self._group.items() if g == crowded]
        victim = min(victims, key=lambda p: self._by_peer[p].expires)
        self._drop(victim)
        return True

    def _expire(self, now: float) -> None:
        # At most once a second: this walks the whole store.
        if now - self._expired_at < 1.0 and now >= self._expired_at:
            return
        self._expired_at = now
        for peer in [p for p, a in self._by_peer.items() if not a.fresh(now)]:
            self._drop(peer)

    def remove(self, peer: str) -> None:
        """Forget ``peer`` (e.g. after it served corrupt data)."""
        with self._lock:
            self._drop(peer)

    # -- reading ------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return len(self._by_peer)

    def get(self, peer: str) -> Announcement | None:
        """The fresh announcement of ``peer``, if known."""
        with self._lock:
            ann = self._by_peer.get(peer)
        return ann if ann is not None and ann.fresh(self.clock()) else None

    def all(self) -> list[Announcement]:
        """Every fresh announcement (no particular order)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            return [a for a in self._by_peer.values() if a.fresh(now)]

    def holders(self, manifest: str) -> list[Announcement]:
        """Fresh announcements of peers that hold the artifact ``manifest``."""
        return [a for a in self.all() if a.holds(manifest)]

    def sample(self, limit: int, *, manifest: str | None = None) -> list[Announcement]:
        """Up to ``limit`` announcements, round-robin across address ranges, random within.

        With ``manifest``, holders of that artifact come first.
        """
        now = self.clock()
        with self._lock:
            self._expire(now)
            keys = list(self._by_peer)
            # Bound the work: diversity is chosen among a random subset of 4 x limit.
            if len(keys) > 4 * limit:
                picked = self.rng.sample(keys, 4 * limit)
                if manifest is not None:
                    held = [p for p, a in self._by_peer.items() if a.holds(manifest)]
                    picked = list(dict.fromkeys(held[: 4 * limit] + picked))
                keys = picked
            items = [(self._by_peer[p], self._group[p]) for p in keys]
        items = [ag for ag in items if ag[0].fresh(now)]
        self.rng.shuffle(items)
        if manifest is not None:
            items.sort(key=lambda ag: not ag[0].holds(manifest))
        buckets: OrderedDict[str, list[Announcement]] = OrderedDict()
        for ann, group in items:
            buckets.setdefault(group, []).append(ann)
        out: list[Announcement] = []
        while len(out) < limit and buckets:
            for group in list(buckets):
                out.append(buckets[group].pop(0))
                if not buckets[group]:
                    del buckets[group]
                if len(out) >= limit:
                    break
        return out

    def announcements(self, limit: int) -> list[Mapping[str, Any]]:
        """``PexSource`` for the HTTP server: our own announcement, then a diverse sample."""
        own = self.own if self.own is not None and self.own.fresh(self.clock()) else None
        picked = self.sample(limit - (1 if own else 0))
        return [a.to_json() for a in ([own] if own else []) + picked]
