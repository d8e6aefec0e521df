"""More sources for a running download, found by peer exchange.

When the scheduler says ``NeedMoreSources`` (chunks that no known source
holds) — and once when a download starts with few peers — the engine asks a
:class:`SourceFinder` for new sources. :class:`PexFinder` is the one built on
the discovery layer:

* it asks a few contacts for their peer-exchange list
  (``GET /.well-known/webseed/pex``, publish-only: a downloader announces
  nothing): the peers already in the download, the ``--bootstrap`` peers, and
  every peer it learns about (transitively);
* every announcement is verified exactly as :mod:`peer.discovery` does it
  (:class:`~peer.discovery.store.GossipStore`: signature, freshness, size, caps
  per identity and per address range); forged, unsigned or expired ones are
  dropped and counted;
* fresh announcements that list this artifact's manifest digest become peer
  sources (their own URLs, or their relays for outbound-only peers), at most
  ``per_round`` per round, never one already in the download (banned ones
  included), never our own identity;
* remembered peers (the last-served file) are *candidates*: one bitfield
  probe each tells whether they hold this artifact.

Everything is bounded: ``fanout`` contacts per round, ``max_rounds`` rounds,
each contact asked at most ``max_asks`` times, capped response bodies, a
per-request time-out. The scheduler spaces its advice (``advice_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from peer.discovery.announce import address_group, valid_url
from peer.discovery.client import fetch_pex, read_capped
from peer.discovery.errors import AnnouncementError, DiscoveryError
from peer.discovery.exchange import decode_message
from peer.discovery.node import download_urls
from peer.discovery.store import GossipStore, StoreLimits
from peer.engine.sources import SourceSpec

log = logging.getLogger("peer.engine.more_sources")

#: Bitfields larger than this are not read when probing a remembered peer.
MAX_PROBE_BODY = 1 << 20


@dataclass(frozen=True)
class SourceNeed:
    """Why the engine asks for sources, and what it already has.

    ``peers``: peer sources in the download that are not banned (contacts to ask);
    ``known``: every source base URL the download has ever used, banned ones
    included (never offered again); ``missing``: chunks without a source
    (0 when the download is just starting).
    """

    reason: str
    missing: int = 0
    peers: tuple[str, ...] = ()
    known: frozenset[str] = field(default_factory=frozenset)


class SourceFinder(Protocol):
    """What the engine calls on ``NeedMoreSources`` (see :class:`PexFinder`)."""

    async def find(self, need: SourceNeed, client: httpx.AsyncClient) -> Sequence[SourceSpec]:
        """New sources (never one of ``need.known``); may be empty. Must not raise."""
        ...

    @property
    def exhausted(self) -> bool:
        """True when asking again cannot find anything (the engine then stops waiting)."""
        ...


class PexFinder:
    """Finds holders of ``manifest`` (a manifest digest) by peer exchange; see the module doc.

    ``bootstrap``: peers to ask for their pex lists; ``candidates``: peers to
    probe directly (remembered last-served peers); ``self_id``: our peer id
    (our own announcement is never a source).
    """

    def __init__(
        self,
        manifest: str,
        *,
        bootstrap: Iterable[str] = (),
        candidates: Iterable[str] = (),
        self_id: str = "",
        per_round: int = 4,
        fanout: int = 4,
        max_rounds: int = 8,
        max_asks: int = 2,
        max_contacts: int = 64,
        want_peers: int = 4,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        limits: StoreLimits | None = None,
    ) -> None:
        self.manifest = manifest
        self.self_id = self_id
        self.per_round = per_round
        self.fanout = fanout
        self.max_rounds = max_rounds
        self.max_asks = max_asks
        self.max_contacts = max_contacts
        self.want_peers = want_peers
        self.timeout = timeout
        self.store = GossipStore(limits, clock=clock, self_peer=self_id)
        #: Contact URL -> times asked (insertion order: bootstrap first).
        self.asked: dict[str, int] = {}
        self.candidates = [u for u in (valid_url(c) for c in candidates) if u is not None]
        self.given: set[str] = set()
        self.rounds = 0
        #: Why each round was asked for (``start`` or the scheduler's reason).
        self.reasons: list[str] = []
        self.verdicts: Counter[str] = Counter()
        self.errors: list[str] = []
        self._last_news = True
        for url in bootstrap:
            self._contact(url)

    # -- contacts -------------------------------------------------------------------------

    def _contact(self, url: str) -> None:
        valid = valid_url(url)
        if valid is not None and valid not in self.asked and len(self.asked) < self.max_contacts:
            self.asked[valid] = 0

    def _due(self) -> list[str]:
        ready = [u for u, n in self.asked.items() if n < self.max_asks]
        # Never-asked contacts first (strangers tell us most), then the least asked;
        # one per address range while there is a choice (an attacker's subnet
        # cannot take every slot).
        ready.sort(key=lambda u: self.asked[u])
        chosen: list[str] = []
        groups: set[str] = set()
        for url in ready:
            group = address_group(url)
            if group not in groups and len(chosen) < self.fanout:
                groups.add(group)
                chosen.append(url)
        for url in ready:
            if len(chosen) >= self.fanout:
                break
            if url not in chosen:
                chosen.append(url)
        return chosen

    @property
    def exhausted(self) -> bool:
        """No rounds left, or the last round learnt nothing and nobody is left to ask."""
        if self.rounds >= self.max_rounds:
            return True
        if self.candidates:
            return False
        never_asked = any(n == 0 for n in self.asked.values())
        return self.rounds > 0 and not self._last_news and not never_asked

    # -- one round ------------------------------------------------------------------------

    async def find(self, need: SourceNeed, client: httpx.AsyncClient) -> list[SourceSpec]:
        """One bounded round: ask due contacts, probe candidates; return new sources."""
        if self.rounds >= self.max_rounds:
            return []
        quiet = not self.asked and not self.candidates
        if need.reason == "start" and len(need.peers) >= self.want_peers and quiet:
            return []  # enough peers and nobody else to ask: the scheduler will tell us
        self.rounds += 1
        self.reasons.append(need.reason)
        for url in need.peers:
            self._contact(url)
        due = self._due()
        for url in due:
            self.asked[url] += 1
        before = self.verdicts["added"] + self.verdicts["updated"]
        await asyncio.gather(*(self._ask(client, u) for u in due))
        self._last_news = self.verdicts["added"] + self.verdicts["updated"] > before
        out = self._holders(need)
        if len(out) < self.per_round and self.candidates:
            out += await self._probe(client, need, self.per_round - len(out))
        return out

    async def _ask(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            items = decode_message(await fetch_pex(client, url, timeout=self.timeout))
        except DiscoveryError as exc:  # it names the pex URL
            self.errors = [*self.errors[-15:], str(exc)]
            return
        except (OSError, AnnouncementError) as exc:
            self.errors = [*self.errors[-15:], f"{url}: {exc}"]
            return
        verdicts = self.store.add_many(items, address_group(url))
        self.verdicts.update(verdicts)
        if verdicts["rejected"]:
            log.warning("%s: %d announcement(s) rejected", url, verdicts["rejected"])

    def _holders(self, need: SourceNeed) -> list[SourceSpec]:
        out: list[SourceSpec] = []
        # Newest first: a peer that re-announced recently is the likeliest to be up.
        for ann in sorted(self.store.all(), key=lambda a: -a.issued):
            urls = download_urls(ann)
            if ann.urls:
                self._contact(ann.urls[0])  # learn the swarm transitively
            if ann.peer == self.self_id or not ann.holds(self.manifest) or not urls:
                continue
            url = urls[0].rstrip("/")
            if url in need.known or url in self.given or len(out) >= self.per_round:
                continue
            self.given.add(url)
            out.append(SourceSpec(url, "peer"))
        return out

    async def _probe(
        self, client: httpx.AsyncClient, need: SourceNeed, limit: int
    ) -> list[SourceSpec]:
        """Ask remembered peers for this artifact's bitfield; a 200 makes them sources."""
        picked: list[str] = []
        while self.candidates and len(picked) < limit:
            url = self.candidates.pop(0)
            if url not in need.known and url not in self.given:
                picked.append(url)
        specs = [SourceSpec(u, "peer") for u in picked]
        held = await asyncio.gather(*(self._holds(client, s) for s in specs))
        out = [s for s, ok in zip(specs, held, strict=True) if ok]
        self.given.update(s.base for s in out)
        for s in specs:
            self._contact(s.base)  # a remembered peer may know others who hold it
        return out

    async def _holds(self, client: httpx.AsyncClient, spec: SourceSpec) -> bool:
        try:
            async with client.stream(
                "GET", spec.bitfield_url(self.manifest), timeout=self.timeout
            ) as resp:
                if resp.status_code != 200:
                    return False
                bits = await read_capped(resp, MAX_PROBE_BODY)
        except (httpx.HTTPError, OSError, DiscoveryError) as exc:
            self.errors = [*self.errors[-15:], f"{spec.base}: {exc}"]
            return False
        return any(bits)

    def report(self) -> dict[str, object]:
        """What discovery did, for the download report."""
        return {
            "rounds": self.rounds,
            "reasons": self.reasons,
            "asked": {u: n for u, n in self.asked.items() if n},
            "added": sorted(self.given),
            "announcements": dict(self.verdicts),
            "errors": self.errors[-8:],
        }
