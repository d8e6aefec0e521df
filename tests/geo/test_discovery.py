"""Mirror lists, Metalink 4 files, index records and peer announcements."""

from __future__ import annotations

import json

import pytest

from geo.discovery import (
    MAX_XML_ELEMENTS,
    merge_mirrors,
    mirror_from_peer,
    mirrors_from_index,
    parse_metalink,
    parse_mirror_list,
)
from geo.errors import MirrorListError, NoMirrorError
from geo.mirror import Mirror

METALINK = b"""<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <file name="data.bin">
    <size>1048576</size>
    <hash type="sha-256">ABCDEF</hash>
    <url location="de" priority="2">http://127.0.0.2:8080/releases/data.bin</url>
    <url priority="1">https://mirror.example/releases/data.bin</url>
    <url location="us">ftp://old.example/data.bin</url>
    <metaurl mediatype="torrent">http://t.example/data.torrent</metaurl>
  </file>
  <file name="other.iso"><url>http://a.example/other.iso</url></file>
</metalink>"""


def test_json_list_of_urls_and_records_keeps_order_as_priority() -> None:
    doc = json.dumps(
        [
            "http://a.example/",
            {"url": "http://b.example/", "country": "fr", "lat": 48.8, "lon": 2.3},
            {"url": "https://c.example/", "priority": 7, "capacity": 1e7},
        ]
    )
    mirrors = parse_mirror_list(doc)
    assert [m.url for m in mirrors] == [
        "http://a.example/",
        "http://b.example/",
        "https://c.example/",
    ]
    assert [m.priority for m in mirrors] == [1, 2, 7]
    assert mirrors[1].country == "FR" and mirrors[1].lat == 48.8
    assert mirrors[2].capacity == 1e7 and all(m.source == "list" for m in mirrors)
    wrapped = parse_mirror_list(json.dumps({"mirrors": ["http://a.example/"]}).encode())
    assert wrapped[0].url == "http://a.example/"


def test_text_list_with_comments_country_and_priority() -> None:
    text = "# mirrors\nhttp://a.example/ DE\n\nhttp://b.example/ priority=5 # far\n"
    a, b = parse_mirror_list(text)
    assert (a.country, a.priority) == ("DE", 1)
    assert (b.country, b.priority) == (None, 5)


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",
        "{not json",
        '{"mirrors": 3}',
        "http://a.example/ priority=x",
        "http://a.example/ what",
        "ftp://a.example/",
        "http:///nohost",
        "http://a.example/?q=1",
        b"\xff\xfe",
        '[{"url": 5}]',
        '[{"url": "http://a/", "lat": 1}]',
        '[{"url": "http://a/", "lat": 91, "lon": 0}]',
        '[{"url": "http://a/", "country": "DEU"}]',
        '[{"url": "http://a/", "capacity": -1}]',
        '[{"url": "http://a/", "capacity": "x"}]',
        '[{"url": "http://a/", "lat": [1], "lon": 2}]',
        '[{"url": "http://a/", "priority": true}]',
        '[{"url": "http://a/", "protocols": "http"}]',
        '[{"url": "http://a/", "country": 49}]',
        '["http://a/"]' + " " * (16 * 1024 * 1024),
    ],
)
def test_bad_mirror_lists_are_refused(bad: str | bytes) -> None:
    with pytest.raises(MirrorListError):
        parse_mirror_list(bad)


def test_metalink_locations_priorities_and_hashes() -> None:
    files = parse_metalink(METALINK)
    assert [f.name for f in files] == ["data.bin", "other.iso"]
    data = files[0]
    assert data.size == 1048576 and data.hashes == {"sha-256": "abcdef"}
    # ftp and metaurl are ignored: the engine speaks HTTP only.
    assert [(m.url, m.country, m.priority) for m in data.mirrors] == [
        ("http://127.0.0.2:8080/releases/data.bin", "DE", 2),
        ("https://mirror.example/releases/data.bin", None, 1),
    ]
    m = data.mirrors[0]
    assert m.source == "metalink" and m.file_url
    assert m.url_for("anything") == m.url


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="&lol2;"/></metalink>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE m SYSTEM "http://evil.example/x.dtd">
<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="x"/></metalink>"""


@pytest.mark.parametrize(
    "doc",
    [
        BILLION_LAUGHS,
        EXTERNAL,
        b"<metalink",
        b'<metalink xmlns="urn:ietf:params:xml:ns:metalink"></metalink>',
        b"<other/>",
        b'<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file/></metalink>',
        b'<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a"><size>x</size>'
        b"</file></metalink>",
        b'<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a"><size>-1</size>'
        b"</file></metalink>",
        b'<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a">'
        b'<url priority="high">http://a/</url></file></metalink>',
        (
            '<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="a">'
            + "<hash/>" * (MAX_XML_ELEMENTS + 1)
            + "</file></metalink>"
        ),
    ],
)
def test_unsafe_or_malformed_metalink_is_refused(doc: bytes | str) -> None:
    with pytest.raises(MirrorListError):
        parse_metalink(doc)


def test_index_and_peer_records_and_merge_prefers_the_signed_index() -> None:
    index = mirrors_from_index(
        [
            {
                # As TrustedIndex.mirrors gives it: no trailing slash, signed decimal strings.
                "url": "https://m1.example",
                "country": "DE",
                "continent": "EU",
                "lat": "50.100000",
                "lon": "8.700000",
                "capacity": 125e6,
                "protocols": ["http", "h2"],
                "unknown-future-field": 1,
            }
        ]
    )
    assert index[0].source == "index" and index[0].protocols == ("http", "h2")
    assert index[0].url == "https://m1.example/" and index[0].lat == 50.1
    assert (
        index[0].continent == "EU" and index[0].url_for("a/b.iso") == "https://m1.example/a/b.iso"
    )
    peer = mirror_from_peer({"url": "https://m1.example/", "country": "US"})
    other = mirror_from_peer({"url": "http://p.example/"})
    listed = parse_mirror_list("https://m1.example/ FR")
    merged = merge_mirrors([peer, other], listed, index)
    assert [m.url for m in merged] == ["https://m1.example/", "http://p.example/"]
    assert merged[0].source == "index" and merged[0].country == "DE"
    with pytest.raises(MirrorListError):
        Mirror.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(MirrorListError):
        Mirror(url="http://a.example/", source="rumour")


def test_url_for_quotes_repository_paths() -> None:
    m = Mirror(url="http://[::1]:8080/repo/")
    assert m.host == "::1"
    assert m.url_for("/releases/a b#1.iso") == "http://[::1]:8080/repo/releases/a%20b%231.iso"


def test_no_mirror_error_lists_reasons() -> None:
    err = NoMirrorError("nothing", {"http://a/": "connect: refused"})
    assert "http://a/: connect: refused" in str(err) and err.failures
    assert str(NoMirrorError("nothing")) == "nothing"
