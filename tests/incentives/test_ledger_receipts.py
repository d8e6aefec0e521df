"""Ledger decay and persistence; receipts: forged, truncated, replayed, expired, Sybil, huge."""

from __future__ import annotations

import json
import logging
import os

import pytest

from peer.incentives.errors import LedgerError, ReceiptError
from peer.incentives.identity import PeerIdentity, b64e
from peer.incentives.ledger import DAY, Ledger
from peer.incentives.receipts import Receipt, ReceiptBook, ReceiptIssuer, contribution, credits
from peer.incentives.store import read_json, write_json

NOW = 1_800_000_000.0
A = "releases/a.iso"


def test_ledger_decays_by_half_life():
    led = Ledger(half_life=7 * DAY)
    led.record_download("p", A, 1000, NOW)
    led.record_upload("p", A, 400, NOW)
    assert led.get("p", A, NOW).down == 1000
    assert led.get("p", A, NOW + 7 * DAY).down == pytest.approx(500)
    assert led.credit("p", NOW + 14 * DAY) == pytest.approx(250)
    assert led.totals("p", NOW).up == 400
    assert led.get("p", A, NOW - DAY).down == 1000  # clock stepping back never inflates
    assert led.get("nobody", A, NOW).down == 0
    with pytest.raises(ValueError):
        led.record_upload("p", A, -1, NOW)
    with pytest.raises(ValueError):
        led.record_download("p", A, -1, NOW)
    with pytest.raises(ValueError):
        Ledger(half_life=0)


def test_ledger_persists_atomically(tmp_path):
    path = tmp_path / "state" / "ledger.json"
    led = Ledger(path)
    led.record_download("p", A, 1000, NOW)
    led.record_upload("q", "b", 5, NOW)
    led.save()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = Ledger(path)
    assert again.credit("p", NOW) == 1000 and again.peers() == {"p", "q"}
    s = again.summary(NOW)
    assert s["peers"] == 2 and s["down"] == 1000 and s["artifacts"]["b"]["up"] == 5
    Ledger().save()  # in-memory: no-op


def test_ledger_corrupt_and_odd_files(tmp_path, caplog):
    path = tmp_path / "ledger.json"
    path.write_text("{truncated")
    with caplog.at_level(logging.WARNING, logger="peer.incentives"):
        assert Ledger(path).peers() == set()
    assert (tmp_path / "ledger.json.corrupt").exists()
    write_json(path, {"format": "other"})
    assert Ledger(path).peers() == set()
    rows = [["p", A, 1, 2, NOW], ["bad"], ["q", A, -5, 1, NOW], ["r", A, "nan", 1, NOW]]
    write_json(path, {"format": "webseed-ledger-v1", "entries": rows})
    assert Ledger(path).peers() == {"p"}


def test_store_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LedgerError):
        write_json(blocker / "sub" / "x.json", {})
    d = tmp_path / "dir.json"
    d.mkdir()
    with pytest.raises(LedgerError):
        read_json(d)
    assert read_json(tmp_path / "absent.json") is None


def test_ledger_bounded_keeps_big_contributors():
    led = Ledger(max_entries=20)
    led.record_download("big", A, 10**9, NOW)
    for i in range(100):
        led.record_download(f"sybil{i}", A, 1, NOW)
    assert len(led.peers()) <= 20
    assert led.credit("big", NOW) == 10**9


@pytest.fixture
def peers():
    return PeerIdentity.generate(), PeerIdentity.generate(), PeerIdentity.generate()


def _book(me_ledger=None, **kw):
    return ReceiptBook(me_ledger or Ledger(), **kw)


def test_receipt_roundtrip_and_credit(peers, tmp_path):
    downloader, uploader, _ = peers
    issuer = ReceiptIssuer(downloader, path=tmp_path / "issued.json")
    issuer.received(uploader.peer_id, A, 5000)
    r1 = issuer.issue(uploader.peer_id, A, NOW)
    assert Receipt.decode(r1.encode()) == r1
    # The verifier got 3000 bytes directly from the downloader (issuer), so it trusts up to 3000.
    led = Ledger()
    led.record_download(downloader.peer_id, A, 3000, NOW)
    book = _book(led)
    assert book.accept(r1.encode(), presenter=uploader.peer_id, now=NOW) == 5000
    assert book.vouched(uploader.peer_id, downloader.peer_id, NOW) == 5000
    assert book.credit(uploader.peer_id, NOW) == 3000  # bounded by the issuer's own credit
    issuer.received(uploader.peer_id, A, 1000)
    r2 = issuer.issue(uploader.peer_id, A, NOW + 60)
    assert r2.seq == 2 and r2.nbytes == 6000
    assert book.accept(r2, presenter=uploader.peer_id, now=NOW + 60) == 1000
    issuer.save()
    # Sequence numbers continue across restarts.
    again = ReceiptIssuer(downloader, path=tmp_path / "issued.json")
    assert again.issue(uploader.peer_id, A, NOW + 120).seq == 3
    assert contribution(led, book, uploader.peer_id, NOW + 60) == pytest.approx(
        0.5 * 3000, rel=1e-3
    )
    assert credits(led, None, {downloader.peer_id}, NOW)[downloader.peer_id] == 3000
    with pytest.raises(ValueError):
        issuer.received(uploader.peer_id, A, -1)
    with pytest.raises(ReceiptError):
        issuer.issue(downloader.peer_id, A, NOW)


def _issued(issuer_id, uploader_id, nbytes=1000, seq=1, now=NOW, life=DAY):
    ident = issuer_id
    r = Receipt(ident.peer_id, uploader_id, A, nbytes, seq, int(now), int(now + life))
    from peer.incentives.receipts import DOMAIN

    return Receipt(**{**r.__dict__, "sig": ident.sign(DOMAIN, r.body())})


def test_forged_receipt_rejected_logged_no_credit(peers, caplog):
    downloader, uploader, _ = peers
    good = _issued(downloader, uploader.peer_id)
    data = json.loads(good.encode())
    data["bytes"] = 10**9  # inflate after signing
    book = _book()
    with (
        caplog.at_level(logging.WARNING, logger="peer.incentives"),
        pytest.raises(ReceiptError, match="forged"),
    ):
        book.accept(json.dumps(data).encode(), presenter=uploader.peer_id, now=NOW)
    assert "rejected receipt" in caplog.text
    assert book.vouched(uploader.peer_id, downloader.peer_id, NOW) == 0


@pytest.mark.parametrize("cut", [1, 10, 50, 200])
def test_truncated_receipt(peers, cut):
    downloader, uploader, _ = peers
    raw = _issued(downloader, uploader.peer_id).encode()
    with pytest.raises(ReceiptError):
        _book().accept(raw[:-cut], presenter=uploader.peer_id, now=NOW)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("seq"),
        lambda d: d.update(extra=1),
        lambda d: d.update(v=2),
        lambda d: d.update(bytes=-1),
        lambda d: d.update(bytes=1.5),
        lambda d: d.update(seq=True),
        lambda d: d.update(issuer="nope"),
        lambda d: d.update(artifact=""),
        lambda d: d.update(artifact="x" * 300),
        lambda d: d.update(sig="!!"),
        lambda d: d.update(sig=b64e(b"s" * 63)),
    ],
)
def test_malformed_receipt_fields(peers, edit):
    downloader, uploader, _ = peers
    data = json.loads(_issued(downloader, uploader.peer_id).encode())
    edit(data)
    with pytest.raises(ReceiptError):
        _book().accept(json.dumps(data).encode(), presenter=uploader.peer_id, now=NOW)


def test_oversized_and_non_json(peers):
    with pytest.raises(ReceiptError, match="too large"):
        _book().accept(b"{" * 2000, presenter="x", now=NOW)
    with pytest.raises(ReceiptError, match="not JSON"):
        _book().accept(b"\xff\xfe", presenter="x", now=NOW)
    with pytest.raises(ReceiptError):
        _book().accept(b"[]", presenter="x", now=NOW)


def test_replayed_receipt_gives_no_second_credit(peers):
    downloader, uploader, _ = peers
    r = _issued(downloader, uploader.peer_id)
    book = _book()
    assert book.accept(r, presenter=uploader.peer_id, now=NOW) == 1000
    with pytest.raises(ReceiptError, match="replayed"):
        book.accept(r, presenter=uploader.peer_id, now=NOW + 1)
    backwards = _issued(downloader, uploader.peer_id, nbytes=10, seq=5)
    with pytest.raises(ReceiptError, match="backwards"):
        book.accept(backwards, presenter=uploader.peer_id, now=NOW + 1)
    assert book.vouched(uploader.peer_id, downloader.peer_id, NOW + 1) == pytest.approx(
        1000, rel=1e-3
    )


def test_expired_and_future_receipts(peers):
    downloader, uploader, _ = peers
    r = _issued(downloader, uploader.peer_id, life=60)
    with pytest.raises(ReceiptError, match="expired"):
        _book().accept(r, presenter=uploader.peer_id, now=NOW + 61)
    future = _issued(downloader, uploader.peer_id, now=NOW + 3600)
    with pytest.raises(ReceiptError, match="implausible"):
        _book().accept(future, presenter=uploader.peer_id, now=NOW)
    forever = _issued(downloader, uploader.peer_id, life=365 * DAY)
    with pytest.raises(ReceiptError, match="implausible"):
        _book().accept(forever, presenter=uploader.peer_id, now=NOW)


def test_self_issued_and_stolen_receipts(peers):
    downloader, uploader, thief = peers
    self_made = _issued(uploader, uploader.peer_id)
    with pytest.raises(ReceiptError, match="self-issued"):
        _book().accept(self_made, presenter=uploader.peer_id, now=NOW)
    r = _issued(downloader, uploader.peer_id)
    with pytest.raises(ReceiptError, match="someone other"):
        _book().accept(r, presenter=thief.peer_id, now=NOW)


def test_huge_claims_rejected(peers):
    downloader, uploader, _ = peers
    huge = _issued(downloader, uploader.peer_id, nbytes=2**50)
    with pytest.raises(ReceiptError, match="implausibly"):
        _book().accept(huge, presenter=uploader.peer_id, now=NOW)
    sized = _book(artifact_size=lambda a: 1000, max_copies=4)
    with pytest.raises(ReceiptError, match="implausibly"):
        sized.accept(
            _issued(downloader, uploader.peer_id, nbytes=4001), presenter=uploader.peer_id, now=NOW
        )
    assert (
        sized.accept(
            _issued(downloader, uploader.peer_id, nbytes=4000), presenter=uploader.peer_id, now=NOW
        )
        == 4000
    )


def test_sybil_receipts_bring_no_credit(peers):
    _, free_rider, _ = peers
    book = _book(max_tracks=5)
    for _ in range(20):  # a free rider mints receipts from fresh identities
        sybil = PeerIdentity.generate()
        book.accept(
            _issued(sybil, free_rider.peer_id, nbytes=10**9), presenter=free_rider.peer_id, now=NOW
        )
    assert book.credit(free_rider.peer_id, NOW) == 0
    assert len(book._tracks) <= 5


def test_issuer_ignores_malformed_state(peers, tmp_path):
    path = tmp_path / "issued.json"
    path.write_text(json.dumps([["u", A, 1, 2], ["bad"], ["u", "b", "x", 1]]))
    iss = ReceiptIssuer(peers[0], path=path)
    assert list(iss._state) == [("u", A)]
    os.unlink(path)
