"""The signed self-announcement: round trip, and every way a bad one is refused."""

from __future__ import annotations

import json

import pytest

from peer.discovery import announce
from peer.discovery.announce import AnnouncementError, address_group, build, canonical, parse
from peer.incentives.identity import PeerIdentity, b64e

NOW = 1_800_000_000.0
D1, D2 = "a" * 64, "b" * 64


@pytest.fixture(scope="module")
def ident() -> PeerIdentity:
    return PeerIdentity.generate()


def test_round_trip(ident: PeerIdentity) -> None:
    ann = build(ident, ["http://198.18.1.2:8470/"], NOW, have=[D2, D1, D1])
    assert ann.urls == ("http://198.18.1.2:8470",) and ann.have == (D1, D2)
    back = parse(ann.encode(), NOW + 10)
    assert back == ann and back.holds(D1) and not back.holds("c" * 64)
    assert parse(json.loads(ann.encode()), NOW) == ann
    assert ann.contact_urls == ann.urls and ann.groups == {"198.18.1.0/24"}
    assert len(ann.encode()) < 1024


def test_outbound_only(ident: PeerIdentity) -> None:
    ann = build(ident, [], NOW, outbound_only=True, relays=["http://198.18.2.2:80"])
    assert parse(ann.encode(), NOW).contact_urls == ("http://198.18.2.2:80",)
    with pytest.raises(AnnouncementError, match="outbound-only"):
        build(ident, ["http://a.example"], NOW, outbound_only=True)
    with pytest.raises(AnnouncementError, match="must name a url"):
        build(ident, [], NOW)


def _resign(ident: PeerIdentity, obj: dict[str, object]) -> bytes:
    body = {k: v for k, v in obj.items() if k != "sig"}
    obj["sig"] = b64e(ident.sign(announce.DOMAIN, canonical(body)))
    return json.dumps(obj).encode()


def test_forged_rejected(ident: PeerIdentity) -> None:
    obj = json.loads(build(ident, ["http://198.18.1.2"], NOW, have=[D1]).encode())
    tampered = dict(obj, urls=["http://203.0.113.9"])  # redirect peers to the attacker
    with pytest.raises(AnnouncementError, match="forged"):
        parse(json.dumps(tampered).encode(), NOW)
    other = PeerIdentity.generate()  # signed by someone else, claiming ident's id
    with pytest.raises(AnnouncementError, match="forged"):
        parse(_resign(other, dict(obj)), NOW)
    wrong_domain = dict(obj)
    body = {k: v for k, v in obj.items() if k != "sig"}
    wrong_domain["sig"] = b64e(ident.sign("webseed-auth-v1", canonical(body)))
    with pytest.raises(AnnouncementError, match="forged"):
        parse(wrong_domain, NOW)
    with pytest.raises(AnnouncementError, match="forged"):
        parse(dict(obj, sig="!!"), NOW)


def test_expiry_and_lifetime(ident: PeerIdentity) -> None:
    ann = build(ident, ["http://h.example"], NOW, lifetime=60)
    with pytest.raises(AnnouncementError, match="expired"):
        parse(ann.encode(), NOW + 61)
    with pytest.raises(AnnouncementError, match="expired"):  # issued in the future
        parse(ann.encode(), NOW - announce.MAX_SKEW - 1)
    obj = json.loads(ann.encode())
    with pytest.raises(AnnouncementError, match="lifetime"):
        parse(_resign(ident, dict(obj, expires=obj["issued"] + announce.MAX_LIFETIME + 1)), NOW)
    with pytest.raises(AnnouncementError, match="timestamp"):
        parse(_resign(ident, dict(obj, issued=1.5)), NOW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": 2}, "version"),
        ({"extra": 1}, "fields"),
        ({"peer": "short"}, "peer id"),
        ({"urls": ["ftp://h"]}, "http"),
        ({"urls": ["http://u:p@h"]}, "credentials"),
        ({"urls": ["http://h/?q"]}, "credentials"),
        ({"urls": ["http://h:99999"]}, "bad url"),
        ({"urls": ["http://h", "http://h"]}, "duplicates"),
        ({"urls": [f"http://h{i}" for i in range(5)]}, "at most"),
        ({"urls": "http://h"}, "at most"),
        ({"urls": [1]}, "strings"),
        ({"urls": ["http://" + "h" * 300]}, "bad url"),
        ({"urls": ["http://h\tx"]}, "bad url"),
        ({"have": ["A" * 64]}, "have"),
        ({"have": [D2, D1]}, "have"),
        ({"outbound_only": "yes"}, "boolean"),
        ({"sig": 5}, "sig"),
    ],
)
def test_malformed(ident: PeerIdentity, change: dict[str, object], match: str) -> None:
    obj = json.loads(build(ident, ["http://h.example"], NOW).encode())
    with pytest.raises(AnnouncementError, match=match):
        parse(dict(obj, **change), NOW)


def test_oversized_and_not_json(ident: PeerIdentity) -> None:
    with pytest.raises(AnnouncementError, match="too large"):
        parse(b"{" + b" " * announce.MAX_BYTES + b"}", NOW)
    with pytest.raises(AnnouncementError, match="not JSON"):
        parse(b"{nope", NOW)
    with pytest.raises(AnnouncementError, match="not a JSON object"):
        parse(b"[]", NOW)
    with pytest.raises(AnnouncementError, match="at most"):
        build(ident, ["http://h"], NOW, have=[f"{i:064x}" for i in range(announce.MAX_HAVE + 1)])
    # Within every count cap, yet too large once encoded (long URLs): refused by size.
    obj = json.loads(build(ident, ["http://h"], NOW).encode())
    big = dict(obj, have=[f"{i:064x}" for i in range(announce.MAX_HAVE)])
    big["relays"] = ["http://" + "r" * 180 + str(i) for i in range(2)]
    big["urls"] = ["http://" + "u" * 180 + str(i) for i in range(4)]
    big["sig"] = "A" * 86
    monkey = announce.MAX_BYTES
    try:
        announce.MAX_BYTES = 4096
        with pytest.raises(AnnouncementError, match="too large"):
            parse(big, NOW)
    finally:
        announce.MAX_BYTES = monkey


def test_address_group() -> None:
    assert address_group("http://198.18.7.9:1") == "198.18.7.0/24"
    assert address_group("http://[2001:db8:1:2::5]:80") == "2001:db8:1::/48"
    assert address_group("http://[::ffff:198.18.7.9]") == "198.18.7.0/24"
    assert address_group("https://Mirror.Example/x") == "dns:mirror.example"
