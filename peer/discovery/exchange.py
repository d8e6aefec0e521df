"""Peer exchange as a pure state machine: whom to ask next, what to send, what we learnt.

No I/O and no clock: the driver (:mod:`.client`, or the simulator in
``bench/discovery.py``) passes ``now`` in and performs the requests.

One exchange with a contact is one HTTP request: we ``POST`` our own
announcement plus a small diverse sample of what we know, the contact answers
with its own announcement plus a sample of what it knows. Both sides verify
everything they receive (:class:`~.store.GossipStore`).

Contact choice, per round (every ``interval`` seconds, ``fanout`` contacts):
never-asked contacts first (discovery is fastest when we talk to strangers),
then the least recently asked; at most one contact per address range per
round (diversity: an attacker's subnet cannot take all our slots); a contact
that failed waits ``backoff * 2**(failures-1)`` (bounded) and is dropped after
``max_failures`` in a row unless it is a bootstrap contact.

Bootstrap contacts are asked only when nobody else is due (else everyone
would ask them always) -- except one that has never answered us: it is our
way into the swarm, so it counts as a stranger (asked first) and its backoff
starts at the join pace. Without that, peers started together (one before its
bootstrap peer listens) learnt ``fanout`` others from each other, never asked
their bootstrap peer again and stayed an island for good.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .announce import MAX_BYTES, address_group, check_url
from .errors import AnnouncementError
from .store import GossipStore

#: Most announcements accepted in one message (ours out, theirs in).
MAX_LIST = 64
#: Largest message body accepted.
MAX_BODY = MAX_LIST * MAX_BYTES // 2
#: Shortest wait before asking a contact that failed again (also for ``interval=0``).
MIN_BACKOFF = 1.0


@dataclass
class Contact:
    """Someone we can ask: a base URL (a peer's own, or a relay's)."""

    url: str
    bootstrap: bool = False
    asked: float = -1.0
    failures: int = 0
    retry_at: float = 0.0
    successes: int = 0


def decode_message(body: bytes) -> list[object]:
    """The announcements of a pex message body; :class:`AnnouncementError` if malformed."""
    if len(body) > MAX_BODY:
        raise AnnouncementError("pex message too large")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise AnnouncementError("pex message is not JSON") from exc
    items = obj.get("announcements") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise AnnouncementError("pex message has no announcement list")
    return list(items[:MAX_LIST])


def encode_message(announcements: Iterable[Mapping[str, Any]]) -> bytes:
    """A pex message body."""
    return json.dumps(
        {"announcements": [dict(a) for a in announcements][:MAX_LIST]}, separators=(",", ":")
    ).encode()


class Exchange:
    """Decides whom to ask and what to send; feeds what comes back into ``store``."""

    def __init__(
        self,
        store: GossipStore,
        *,
        interval: float = 60.0,
        fanout: int = 3,
        sample_size: int = 32,
        max_contacts: int = 1024,
        backoff: float = 30.0,
        max_backoff: float = 3600.0,
        max_failures: int = 4,
        join_rounds: int = 0,
        join_interval: float | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.fanout = fanout
        self.sample_size = min(sample_size, MAX_LIST - 1)
        self.max_contacts = max_contacts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_failures = max_failures
        self.contacts: dict[str, Contact] = {}
        self.last_round: float | None = None
        #: A joining peer's first ``join_rounds`` rounds come every ``join_interval``
        #: seconds (default interval/6), to learn the swarm quickly, then it settles.
        self.join_rounds = join_rounds
        self.join_interval = interval / 6 if join_interval is None else join_interval
        self.rounds = 0
        self.in_flight: set[str] = set()
        self.sent_messages = 0
        self.sent_bytes = 0
        self.received_bytes = 0

    # -- contacts -------------------------------------------------------------------
    def add_contact(self, url: str, *, bootstrap: bool = False) -> bool:
        """Remember a URL to ask; False if malformed, ours, or we know too many."""
        known = self.contacts.get(url)
        if known is not None:  # fast path: _learn_contacts re-offers every known URL
            known.bootstrap |= bootstrap
            return True
        try:
            url = check_url(url)
        except AnnouncementError:
            return False
        own = self.store.own
        if own is not None and url in own.urls:
            return False
        known = self.contacts.get(url)
        if known is not None:
            known.bootstrap |= bootstrap
            return True
        if len(self.contacts) >= self.max_contacts and not bootstrap:
            return False
        self.contacts[url] = Contact(url, bootstrap=bootstrap)
        return True

    def _learn_contacts(self) -> None:
        news, self.store.news = self.store.news, []
        for ann in news:
            for url in ann.contact_urls[:1]:
                self.add_contact(url)

    # -- choosing ---------------------------------------------------------------------
    def due(self, now: float, limit: int | None = None) -> list[str]:
        """The contacts to ask now (marks them in flight).

        Rounds are paced: at most one every ``interval`` seconds, unless the
        caller asks for an explicit ``limit`` (an on-demand lookup).
        """
        if limit is None and self.last_round is not None and now < self.last_round + self.pace:
            return []
        self.last_round = now
        self.rounds += 1
        self._learn_contacts()
        want = (self.fanout if limit is None else limit) - len(self.in_flight)
        ready = [
            c
            for c in self.contacts.values()
            if c.url not in self.in_flight
            and c.retry_at <= now
            and (c.asked < 0 or now - c.asked >= self.pace)
        ]
        # Strangers first, then the longest unasked; bootstrap contacts only when
        # nobody else is left (they would otherwise be asked by everyone, always),
        # unless one never answered: until it does, we may be an island (see above).
        ready.sort(
            key=lambda c: (
                c.asked >= 0 and not self._unjoined(c),
                c.bootstrap and c.asked >= 0,
                c.asked,
            )
        )
        chosen: list[str] = []
        groups: set[str] = set()
        for contact in ready:
            if len(chosen) >= want:
                break
            group = address_group(contact.url)
            if group in groups:
                continue
            groups.add(group)
            chosen.append(contact.url)
        for contact in ready:  # fill remaining slots if ranges ran out
            if len(chosen) >= want:
                break
            if contact.url not in chosen:
                chosen.append(contact.url)
        for url in chosen:
            self.in_flight.add(url)
            self.contacts[url].asked = now
        return chosen

    @staticmethod
    def _unjoined(contact: Contact) -> bool:
        """A bootstrap contact that has never answered us."""
        return contact.bootstrap and contact.successes == 0

    @property
    def pace(self) -> float:
        """Seconds between rounds now (shorter while joining)."""
        return self.join_interval if self.rounds < self.join_rounds else self.interval

    def next_wakeup(self, now: float) -> float:
        """When the next round is due."""
        if self.last_round is None:
            return now
        return max(now, self.last_round + self.pace)

    # -- messages -----------------------------------------------------------------------
    def payload(self, *, manifest: str | None = None) -> bytes:
        """What we send: our own announcement, then a diverse sample of the store."""
        items = [a.to_json() for a in self.store.sample(self.sample_size, manifest=manifest)]
        if self.store.own is not None:
            items.insert(0, self.store.own.to_json())
        body = encode_message(items)
        self.sent_messages += 1
        self.sent_bytes += len(body)
        return body

    def on_response(self, url: str, body: bytes, now: float, source: str = "") -> Counter[str]:
        """A contact answered ``body``: verify and keep what it told us."""
        self.in_flight.discard(url)
        self.received_bytes += len(body)
        contact = self.contacts.get(url)
        try:
            items = decode_message(body)
        except AnnouncementError:
            self.on_failure(url, now)
            return Counter({"rejected": 1})
        verdicts = self.store.add_many(items, source or address_group(url))
        if contact is not None:
            contact.failures = 0
            contact.successes += 1
        return verdicts

    def on_request(self, body: bytes, source: str) -> tuple[Counter[str], bytes]:
        """A peer asked us (``POST``): keep what it sent, answer with our payload."""
        try:
            items = decode_message(body)
        except AnnouncementError:
            return Counter({"rejected": 1}), self.payload()
        verdicts = self.store.add_many(items, source)
        return verdicts, self.payload()

    def on_failure(self, url: str, now: float) -> None:
        """Asking ``url`` failed (network, status, malformed answer)."""
        self.in_flight.discard(url)
        contact = self.contacts.get(url)
        if contact is None:
            return
        contact.failures += 1
        if contact.failures >= self.max_failures and not contact.bootstrap:
            del self.contacts[url]
            return
        # An unanswered bootstrap contact is retried at the join pace (it may simply
        # start a moment after us); the exponent is capped so 2**n stays a float.
        base = self.backoff
        if self._unjoined(contact):
            base = min(base, max(MIN_BACKOFF, self.join_interval))
        delay = base * 2 ** min(contact.failures - 1, 32)
        contact.retry_at = now + min(self.max_backoff, delay)
