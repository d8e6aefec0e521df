"""Gossip store caps and diversity; the exchange state machine's choices."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from peer.discovery.announce import Announcement, address_group, build
from peer.discovery.errors import AnnouncementError
from peer.discovery.exchange import MAX_BODY, MAX_LIST, Exchange, decode_message, encode_message
from peer.discovery.store import GossipStore, StoreLimits
from peer.incentives.identity import PeerIdentity

NOW = 1_800_000_000.0
IDS = [PeerIdentity.generate() for _ in range(40)]


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def ann(i: int, host: str, t: float = NOW, **kw: object) -> Announcement:
    return build(IDS[i], [f"http://{host}:8470"], t, **kw)  # type: ignore[arg-type]


def store(clock: Clock, **limits: int) -> GossipStore:
    return GossipStore(StoreLimits(**limits), clock=clock, rng=random.Random(1))


def test_add_verify_dedup_and_replace() -> None:
    clock = Clock()
    s = store(clock)
    a = ann(0, "198.18.1.2")
    assert s.add_raw(a.encode()) == "added"
    assert s.add_raw(a.encode()) == "duplicate"  # same bytes: not even re-verified
    assert s.add(a) == "duplicate"
    newer = ann(0, "198.18.1.3", NOW + 5)
    assert s.add_raw(newer.encode()) == "updated" and s.get(a.peer) == newer
    assert s.add(a) == "stale"  # an older one never replaces a newer one
    forged = json.loads(ann(1, "198.18.2.2").encode()) | {"urls": ["http://198.18.9.9"]}
    assert s.add_raw(forged) == "rejected"
    assert s.add_raw({"x": {1, 2}}) == "rejected"  # type: ignore[dict-item]
    assert len(s) == 1 and s.counts["rejected"] == 2


def test_expired_dropped_and_self_ignored() -> None:
    clock = Clock()
    s = store(clock)
    s.set_own(ann(9, "198.18.9.2", lifetime=100))
    assert s.add(ann(9, "198.18.9.2", NOW + 1)) == "self"
    assert s.add(ann(0, "198.18.1.2", NOW - 4000)) == "stale"
    s.add(ann(1, "198.18.1.2", lifetime=100))
    assert len(s) == 1
    clock.t += 101
    assert len(s) == 0 and s.get(IDS[1].peer_id) is None and s.all() == []
    assert s.announcements(10) == []  # our own expired too


def test_per_group_cap_and_eviction_prefers_diversity() -> None:
    clock = Clock()
    s = store(clock, capacity=6, per_group=3)
    verdicts = [s.add(ann(i, f"198.18.1.{i + 2}")) for i in range(5)]  # one /24
    assert verdicts == ["added"] * 3 + ["capped"] * 2
    assert [s.add(ann(i, f"198.18.2.{i}")) for i in range(5, 8)] == ["added"] * 3
    assert len(s) == 6
    # Full: a newcomer from a third range evicts one from a crowded range.
    assert s.add(ann(8, "198.18.3.2")) == "added" and len(s) == 6
    # But a newcomer from an already-crowded range does not evict anyone.
    assert s.add(ann(9, "198.18.2.9")) == "capped"
    # Moving an identity into a full range is refused.
    full = [a for a in s.all() if "198.18.1." in a.urls[0]]
    mover = ann(10, "198.18.4.2")
    s.add(mover)
    s2 = store(clock, per_group=1)
    s2.add(ann(0, "198.18.1.2"))
    s2.add(ann(1, "198.18.5.2"))
    assert s2.add(ann(1, "198.18.1.3", NOW + 1)) == "capped"
    assert full


def test_per_source_cap_and_sample_diversity() -> None:
    clock = Clock()
    s = store(clock, per_source=4, per_group=10)
    items: list[object] = [json.loads(ann(i, f"198.18.{i % 2}.{i + 2}").encode()) for i in range(8)]
    got = s.add_many([*items, "junk"], source="198.18.50.0/24")
    assert got["added"] == 4 and got["capped"] == 5
    assert s.add_many(["junk"])["rejected"] == 1
    for i in range(10, 20):
        s.add(ann(i, f"198.18.{20 + i}.2", have=["a" * 64] if i == 19 else []))
    assert len(s.sample(2, manifest="a" * 64)) == 2  # bounded candidate subset
    sample = s.sample(6)
    groups = [address_group(a.urls[0]) for a in sample]
    assert len(set(groups)) == 6  # one per range before any range repeats
    assert s.sample(3, manifest="a" * 64)[0].peer == IDS[19].peer_id
    assert [a.peer for a in s.holders("a" * 64)] == [IDS[19].peer_id]
    s.set_own(ann(30, "198.18.99.2"))
    listed = s.announcements(5)
    assert listed[0]["peer"] == IDS[30].peer_id and len(listed) == 5
    s.remove(IDS[19].peer_id)
    assert s.holders("a" * 64) == []


def test_outbound_only_counts_in_relay_range() -> None:
    clock = Clock()
    s = store(clock, per_group=1)
    relay = "http://198.18.7.2:80"
    o1 = build(IDS[0], [], NOW, outbound_only=True, relays=[relay])
    o2 = build(IDS[1], [], NOW, outbound_only=True, relays=[relay])
    assert s.add(o1) == "added" and s.add(o2) == "capped"


def test_messages() -> None:
    body = encode_message([{"a": 1}] * (MAX_LIST + 5))
    assert len(decode_message(body)) == MAX_LIST
    for bad in (b"x" * (MAX_BODY + 1), b"{", b"[]", b'{"announcements": 3}'):
        with pytest.raises(AnnouncementError):
            decode_message(bad)


def test_exchange_choice_backoff_and_learning() -> None:
    clock = Clock()
    me = store(clock)
    me.set_own(ann(0, "198.18.1.2"))
    ex = Exchange(me, interval=60, fanout=2, backoff=10, max_failures=2, max_contacts=5)
    assert not ex.add_contact("http://198.18.1.2:8470")  # ourselves
    assert not ex.add_contact("ftp://x")
    assert ex.add_contact("http://198.18.2.2:1", bootstrap=True)
    assert ex.add_contact("http://198.18.2.3:1")  # same /24 as the bootstrap contact
    assert ex.add_contact("http://198.18.3.2:1")
    assert ex.add_contact("http://198.18.3.2:1", bootstrap=True)
    first = ex.due(NOW)
    assert len(first) == 2
    assert len({address_group(u) for u in first}) == 2  # diverse ranges
    assert ex.due(NOW) == []  # everyone in flight or just asked
    # An answer: the contact's announcement and one of a third peer.
    theirs = [ann(1, "198.18.4.2").to_json(), ann(2, "198.18.5.2").to_json()]
    verdicts = ex.on_response(first[0], encode_message(theirs), NOW + 1)
    assert verdicts == Counter({"added": 2})
    ex.on_failure(first[1], NOW + 1)
    ex.on_failure("http://nowhere.example", NOW)
    assert ex.on_response(first[0], b"garbage", NOW + 2) == Counter({"rejected": 1})
    # Learnt peers become contacts and strangers are preferred.
    nxt = ex.due(NOW + 2, limit=5)
    assert "http://198.18.4.2:8470" in nxt and "http://198.18.5.2:8470" in nxt
    assert ex.next_wakeup(NOW + 2) >= NOW + 2
    for url in nxt:
        ex.on_failure(url, NOW + 3)
    for url in nxt:
        ex.on_failure(url, NOW + 3)
    # Non-bootstrap contacts are dropped after max_failures; bootstrap ones stay.
    assert "http://198.18.2.2:1" in ex.contacts
    assert ex.contacts["http://198.18.2.2:1"].retry_at > NOW + 3
    counts, answer = ex.on_request(encode_message([ann(3, "198.18.6.2").to_json()]), "x")
    assert counts["added"] == 1 and decode_message(answer)[0]["peer"] == IDS[0].peer_id
    counts, _ = ex.on_request(b"nonsense", "x")
    assert counts["rejected"] == 1
    assert ex.sent_messages == 2 and ex.received_bytes > 0
    empty = Exchange(store(clock))
    assert empty.next_wakeup(NOW) == NOW  # never ran a round: due at once
    assert empty.due(NOW) == [] and empty.next_wakeup(NOW + 1) == NOW + empty.interval
    assert empty.due(NOW + 1) == []  # paced: one round per interval


def test_contact_limit() -> None:
    ex = Exchange(store(Clock()), max_contacts=1)
    assert ex.add_contact("http://198.18.1.2")
    assert not ex.add_contact("http://198.18.1.3")
    assert ex.add_contact("http://198.18.1.4", bootstrap=True)


def test_join_burst_then_settles() -> None:
    ex = Exchange(store(Clock()), interval=60, join_rounds=2)
    ex.add_contact("http://198.18.1.2")
    assert ex.due(NOW) and ex.next_wakeup(NOW) == NOW + 10  # joining: every interval/6
    ex.on_failure("http://198.18.1.2", NOW)
    ex.due(NOW + 10)
    assert ex.rounds == 2 and ex.next_wakeup(NOW + 10) == NOW + 70  # settled


def test_unanswered_bootstrap_contact_is_not_starved() -> None:
    """A peer that starts before its bootstrap peer listens must still join it.

    The netns swarm's flake: p3 (bootstrap p1) asked p1 a moment before p1
    listened, failed, then learnt p4..p6 (who knew p3) and, with ``fanout``
    other contacts always due, never asked its bootstrap contact again: an
    island of four peers, for good.
    """
    clock = Clock()
    me = store(clock)
    me.set_own(ann(0, "198.18.4.2"))
    ex = Exchange(me, interval=0.5, fanout=3, join_rounds=12)
    boot = "http://198.18.2.2:8470"
    ex.add_contact(boot, bootstrap=True)
    assert ex.due(clock.t) == [boot]
    ex.on_failure(boot, clock.t)  # connection refused: p1 is still starting
    # The rest of the chain finds us and becomes our contacts.
    ex.on_request(encode_message([ann(i, f"198.18.{4 + i}.2").to_json() for i in (1, 2, 3)]), "x")
    asked_boot = None
    for _ in range(400):  # 100 s of rounds, every other contact answers
        clock.t += 0.25
        for url in ex.due(clock.t):
            if url == boot:
                asked_boot = clock.t - NOW
            ex.on_response(url, encode_message([]), clock.t)
        if asked_boot is not None:
            break
    # Retried at the join pace (1 s floor), not after the 30 s backoff nor never.
    assert asked_boot is not None and asked_boot <= 1.5, asked_boot
    # Once it has answered, it is a last resort again.
    for _ in range(8):
        clock.t += 0.5
        assert boot not in ex.due(clock.t)
        for url in list(ex.in_flight):
            ex.on_response(url, encode_message([]), clock.t)


def test_unanswered_bootstrap_backoff_grows_and_stays_bounded() -> None:
    ex = Exchange(store(Clock()), interval=60, backoff=30, max_backoff=3600)
    ex.add_contact("http://198.18.1.2", bootstrap=True)
    ex.add_contact("http://198.18.2.2")
    waits = []
    for _ in range(3):
        ex.on_failure("http://198.18.1.2", NOW)
        waits.append(ex.contacts["http://198.18.1.2"].retry_at - NOW)
    assert waits == [10, 20, 40]  # from the join pace (interval/6), doubling
    ex.on_failure("http://198.18.2.2", NOW)
    assert ex.contacts["http://198.18.2.2"].retry_at - NOW == 30  # others: unchanged
    ex.contacts["http://198.18.1.2"].failures = 5000  # down for months: no overflow
    ex.on_failure("http://198.18.1.2", NOW)
    assert ex.contacts["http://198.18.1.2"].retry_at - NOW == 3600
    # A bootstrap contact that answered once backs off like any other.
    ex.on_response("http://198.18.1.2", encode_message([]), NOW)
    ex.on_failure("http://198.18.1.2", NOW)
    assert ex.contacts["http://198.18.1.2"].retry_at - NOW == 30
