"""Upload-slot policy, seeding policy, recognition and signed summaries, server adapter."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest

from peer.incentives.adapter import IncentiveUploadPolicy
from peer.incentives.identity import PeerIdentity
from peer.incentives.ledger import DAY, Ledger
from peer.incentives.policy import SeedingPolicy
from peer.incentives.priority import SlotPolicy, Waiting, waterfill
from peer.incentives.receipts import DOMAIN, Receipt
from peer.incentives.recognition import (
    GIB,
    TIB,
    Counters,
    Recognition,
    badges_of,
    level_of,
    sign_summary,
    verify_summary,
)
from webseed.errors import SignatureError

NOW = 1_800_000_000.0


def test_waterfill_caps_and_redistributes():
    a = waterfill(10, {"a": 1, "b": 100, "c": 100}, {"a": 1, "b": 1, "c": 2})
    assert a["a"] == 1 and a["b"] == pytest.approx(3) and a["c"] == pytest.approx(6)
    assert waterfill(10, {"a": 1}, {"a": 1}) == {"a": 1}
    assert waterfill(10, {"a": 5}, {}) == {"a": 0.0}


def test_allocate_propshare_optimistic_and_work_conserving():
    pol = SlotPolicy(optimistic_share=0.2)
    demand = {"big": 100.0, "small": 100.0, "new": 100.0}
    alloc = pol.allocate(50, demand, {"big": 3.0, "small": 1.0})
    assert alloc["new"] == pytest.approx(10)  # optimistic share
    assert alloc["big"] == pytest.approx(3 * alloc["small"])  # proportional to credit
    assert sum(alloc.values()) == pytest.approx(50)
    # Spare capacity: contributors saturated, the free rider gets the rest (never starved).
    spare = pol.allocate(50, {"big": 5.0, "new": 100.0}, {"big": 3.0})
    assert spare["big"] == 5 and spare["new"] == pytest.approx(45)
    # Idle swarm: a lone free rider takes everything.
    assert pol.allocate(50, {"new": 100.0}, {})["new"] == 50
    with pytest.raises(ValueError):
        SlotPolicy(optimistic_share=2)


def test_choose_serves_contributor_before_free_rider_and_keeps_optimistic():
    pol = SlotPolicy(optimistic_share=0.25)
    credit = {"c1": 300.0, "c2": 100.0}
    waiting = [Waiting(f"fr{i}", "", NOW + i) for i in range(4)]
    waiting += [Waiting(f"c1-{i}", "c1", NOW + 10 + i) for i in range(20)]
    waiting += [Waiting(f"c2-{i}", "c2", NOW + 10 + i) for i in range(20)]
    first = pol.choose(waiting, NOW + 50, free=1, credit=credit)
    assert first[0].peer == "c1"  # the free riders arrived first but wait
    grants = pol.choose([w for w in waiting if w not in first], NOW + 50, free=16, credit=credit)
    peers = [g.peer for g in grants]
    assert peers.count("") == 4  # one in four grants is optimistic
    c1 = peers.count("c1") + 1  # plus the first grant
    assert c1 == pytest.approx(3 * peers.count("c2"), abs=1)
    # Only free riders waiting: they get every free slot.
    only = pol.choose(waiting[:4], NOW + 60, free=10, credit=credit)
    assert len(only) == 4
    assert pol.choose([], NOW, free=3, credit={}) == []


def test_score_and_grants():
    pol = SlotPolicy(optimistic_share=0.5, memory=100)
    assert pol.score("c", 100.0, NOW) == 100.0
    pol.note_grant("c", NOW)
    assert pol.score("c", 100.0, NOW) == 50.0
    assert pol.score("c", 100.0, NOW + 10_000) == pytest.approx(100.0)  # grants decay
    scores = [pol.score("", 0.0, NOW) for _ in range(4)]
    assert scores.count(math.inf) == 2 and scores.count(0.0) == 2
    pol.note_grant("", NOW)


@dataclass(frozen=True)
class FakeRequester:  # the shape of webseed.server.capacity.Requester
    peer: str
    host: str = "127.0.0.1"
    path: str = "/a.iso"


def test_adapter_ranks_contributors_and_accounts():
    led = Ledger()
    led.record_download("contrib", "/a.iso", 10**6, NOW)
    rec = Recognition()
    clock = iter([NOW] * 100).__next__
    pol = IncentiveUploadPolicy(
        led, recognition=rec, slots=SlotPolicy(optimistic_share=0.0), clock=clock
    )
    assert pol.rank(FakeRequester("contrib")) > pol.rank(FakeRequester("")) == 0.0
    pol.served(FakeRequester("contrib"), 500)
    pol.served(FakeRequester(""), 100)
    assert led.get("contrib", "/a.iso", NOW).up == 500
    assert rec.per["/a.iso"].served == 600


def test_seeding_policy():
    p = SeedingPolicy()
    assert p.keep_seeding(size=100, uploaded=10**6, seeded_seconds=60)  # minimum time first
    assert not p.keep_seeding(size=100, uploaded=200, seeded_seconds=7200)
    keep, why = p.decide(size=100, uploaded=50, seeded_seconds=8 * DAY)
    assert not keep and "time goal" in why
    assert p.decide(size=100, uploaded=50, seeded_seconds=DAY) == (True, "goal not reached")
    forever = SeedingPolicy.from_config({"ratio": "forever", "days": None})
    assert forever.keep_seeding(size=1, uploaded=10**9, seeded_seconds=10**9)
    cfg = SeedingPolicy.from_config({"ratio": 1, "days": 2, "min_seconds": 0})
    assert cfg.seconds == 2 * DAY and cfg.ratio == 1.0
    assert SeedingPolicy.from_config({}).ratio == 2.0
    for bad in ({"ratio": -1}, {"seconds": -1}, {"min_seconds": -1}):
        with pytest.raises(ValueError):
            SeedingPolicy.from_config(bad)


def test_levels_and_badges(tmp_path):
    assert level_of(Counters()) == "newcomer"
    assert level_of(Counters(DAY, GIB)) == "seeder"
    assert level_of(Counters(30 * DAY, TIB)) == "pillar"
    per = {f"a{i}": Counters(31 * DAY, TIB // 5, 1) for i in range(10)}
    total = Counters(310 * DAY, 2 * TIB, 10)
    assert badges_of(per, total) == [
        "first-upload",
        "long-tail",
        "month-seeder",
        "ratio-1",
        "ratio-2",
        "terabyte",
        "week-seeder",
    ]
    rec = Recognition(tmp_path / "rec.json")
    rec.seeded("a", 2 * DAY)
    rec.served("a", 2 * GIB)
    rec.downloaded("a", GIB)
    rec.save()
    again = Recognition(tmp_path / "rec.json")
    s = again.summary()
    assert s["level"] == "seeder" and "ratio-2" in s["badges"] and s["total"]["served"] == 2 * GIB
    for bad in (rec.seeded, rec.served, rec.downloaded):
        with pytest.raises(ValueError):
            bad("a", -1)
    (tmp_path / "rec.json").write_text(
        json.dumps(
            {"artifacts": {"x": {"seconds": 1}, "y": {"seconds": -1, "served": 0, "downloaded": 0}}}
        )
    )
    assert Recognition(tmp_path / "rec.json").per == {}
    assert Counters().ratio is None


def _receipt(issuer, uploader_id, nbytes, life=DAY):
    r = Receipt(issuer.peer_id, uploader_id, "a", nbytes, 1, int(NOW), int(NOW + life))
    return Receipt(**{**r.__dict__, "sig": issuer.sign(DOMAIN, r.body())})


def test_signed_summary_verifies_and_counts_only_good_receipts():
    me, d1, d2 = PeerIdentity.generate(), PeerIdentity.generate(), PeerIdentity.generate()
    rec = Recognition()
    rec.served("a", 5000)
    receipts = [
        _receipt(d1, me.peer_id, 3000),
        _receipt(d1, me.peer_id, 1000),  # older one from the same issuer: best counts
        _receipt(d2, me.peer_id, 500, life=-10),  # expired
        _receipt(me, me.peer_id, 10**9),  # self-issued
        _receipt(d1, d2.peer_id, 77),  # someone else's: left out when signing
    ]
    raw = sign_summary(me, rec, NOW, receipts)
    out = verify_summary(raw, NOW)
    assert out["peer"] == me.peer_id and out["receipted_bytes"] == 3000
    assert out["receipt_issuers"] == 1 and out["summary"]["total"]["served"] == 5000
    # Tampered numbers break the signature.
    data = json.loads(raw)
    data["body"]["summary"]["total"]["served"] = 10**15
    with pytest.raises(SignatureError):
        verify_summary(json.dumps(data).encode(), NOW)
    for bad in (
        b"x" * (300 * 1024),
        b"{}",
        b"not json",
        json.dumps({"body": {"peer": "x", "receipts": []}, "sig": "AA"}).encode(),
    ):
        with pytest.raises(SignatureError):
            verify_summary(bad, NOW)


def test_debtors_get_spare_capacity_only():
    pol = SlotPolicy(optimistic_share=0.5)
    demand = {"c": 100.0, "new": 100.0, "debtor": 100.0}
    alloc = pol.allocate(40, demand, {"c": 5.0, "debtor": -1.0})
    assert alloc["new"] == pytest.approx(20) and alloc["c"] == pytest.approx(20)
    assert alloc["debtor"] == 0.0
    # Work conserving: what the others leave goes to the debtor.
    spare = pol.allocate(40, {"c": 5.0, "new": 5.0, "debtor": 100.0}, {"c": 5.0, "debtor": -1.0})
    assert spare["debtor"] == pytest.approx(30)
    # Discrete slots: the optimistic slot goes to the stranger, the debtor waits.
    waiting = [Waiting("d", "debtor", NOW), Waiting("s", "stranger", NOW + 1)]
    waiting.append(Waiting("c", "c", NOW + 2))
    got = pol.choose(waiting, NOW + 3, free=2, credit={"c": 5.0, "debtor": -1.0})
    assert [w.peer for w in got] == ["c", "stranger"]
    assert pol.choose(waiting[:1], NOW + 4, free=1, credit={"debtor": -1.0})[0].peer == "debtor"
    assert pol.score("debtor", -1.0, NOW) == -1.0


def test_adapter_marks_debtors():
    led = Ledger()
    pol = IncentiveUploadPolicy(
        led, slots=SlotPolicy(optimistic_share=0.0), clock=lambda: NOW, bootstrap_allowance=1000
    )
    assert pol.rank(FakeRequester("taker")) == 0.0  # a stranger
    pol.served(FakeRequester("taker"), 5000)
    assert pol.rank(FakeRequester("taker")) == -1.0  # took more than the allowance, gave nothing
    led.record_download("taker", "/a.iso", 10, NOW)
    assert pol.rank(FakeRequester("taker")) > 0  # gave something back: a contributor
