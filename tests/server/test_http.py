"""The ASGI app under real Hypercorn on 127.0.0.1, driven by httpx: the happy paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from peer.incentives.client import PeerAuth
from peer.incentives.identity import PeerIdentity
from tests.server.conftest import SIZE
from tests.server.helpers import WK, parse_multipart, rand
from webseed.server.stats import ANONYMOUS

DATA = rand(SIZE)


def test_full_get_byte_for_byte(server: str, repo: Path) -> None:
    r = httpx.get(f"{server}/releases/big.bin")
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["accept-ranges"] == "bytes"
    assert int(r.headers["content-length"]) == SIZE
    assert r.headers["last-modified"]


def test_etag_is_the_manifest_digest(server: str, repo: Path) -> None:
    r = httpx.head(f"{server}/releases/big.bin")
    digest = r.headers["webseed-manifest"]
    assert r.headers["etag"] == f'"{digest}"'
    assert (repo / WK / "manifests" / f"{digest}.json").exists()
    # A file outside the index gets the inode/size/mtime validator.
    r2 = httpx.head(f"{server}/plain/unlisted.txt")
    assert r2.headers["etag"].startswith('"f-')
    assert r2.headers["content-type"].startswith("text/plain")
    assert r2.content == b""


def test_single_range(server: str) -> None:
    r = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=1000-2999999"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 1000-2999999/{SIZE}"
    assert r.content == DATA[1000:3000000]
    r = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=-10"})
    assert r.content == DATA[-10:]


def test_multiple_ranges_multipart(server: str) -> None:
    r = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=200-299,0-99,3000000-"})
    assert r.status_code == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.content)
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert parts == [
        (f"bytes 0-99/{SIZE}", DATA[0:100]),
        (f"bytes 200-299/{SIZE}", DATA[200:300]),
        (f"bytes 3000000-{SIZE - 1}/{SIZE}", DATA[3000000:]),
    ]


def test_head_mirrors_get_headers(server: str) -> None:
    r = httpx.head(f"{server}/releases/big.bin", headers={"Range": "bytes=0-99,200-299"})
    g = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=0-99,200-299"})
    assert r.status_code == g.status_code == 206
    assert r.headers["content-length"] == g.headers["content-length"]
    assert r.content == b""


def test_416_past_the_end(server: str) -> None:
    r = httpx.get(f"{server}/releases/big.bin", headers={"Range": f"bytes={SIZE}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    r = httpx.get(f"{server}/empty.bin", headers={"Range": "bytes=0-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */0"
    assert httpx.get(f"{server}/empty.bin").content == b""


def test_if_range(server: str) -> None:
    etag = httpx.head(f"{server}/releases/big.bin").headers["etag"]
    lm = httpx.head(f"{server}/releases/big.bin").headers["last-modified"]
    hit = httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=0-9", "If-Range": etag})
    assert hit.status_code == 206 and hit.content == DATA[:10]
    by_date = httpx.get(
        f"{server}/releases/big.bin", headers={"Range": "bytes=0-9", "If-Range": lm}
    )
    assert by_date.status_code == 206
    for stale in ('"0000"', f"W/{etag}", "Tue, 01 Jan 2002 00:00:00 GMT", "garbage"):
        miss = httpx.get(
            f"{server}/releases/big.bin", headers={"Range": "bytes=0-9", "If-Range": stale}
        )
        assert miss.status_code == 200, stale
        assert len(miss.content) == SIZE


def test_if_none_match(server: str) -> None:
    etag = httpx.head(f"{server}/releases/big.bin").headers["etag"]
    r = httpx.get(f"{server}/releases/big.bin", headers={"If-None-Match": f'"x", {etag}'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag


def test_method_not_allowed_and_root(server: str) -> None:
    r = httpx.post(f"{server}/releases/big.bin", content=b"x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert httpx.get(f"{server}/").status_code == 404
    assert httpx.get(f"{server}/releases/nope.bin").status_code == 404
    assert httpx.get(f"{server}/releases").status_code == 404  # directories are not listed


def test_well_known_metadata_and_manifest(server: str, repo: Path) -> None:
    r = httpx.get(f"{server}/{WK}/metadata/1.targets.json")
    assert r.status_code == 200
    assert r.content == (repo / WK / "metadata" / "1.targets.json").read_bytes()
    assert r.headers["content-type"] == "application/json"
    assert httpx.get(f"{server}/{WK}/metadata/..%2f..%2fetc").status_code == 404
    assert httpx.get(f"{server}/{WK}/metadata/nope.json").status_code == 404
    digest = httpx.head(f"{server}/releases/big.bin").headers["webseed-manifest"]
    m = httpx.get(f"{server}/{WK}/manifests/{digest}.json")
    assert m.status_code == 200
    assert hashlib.sha256(m.content).hexdigest() == digest
    assert "immutable" in m.headers["cache-control"]
    assert httpx.get(f"{server}/{WK}/manifests/{'0' * 64}.json").status_code == 404
    assert httpx.get(f"{server}/{WK}/manifests/xyz.json").status_code == 404
    assert httpx.get(f"{server}/{WK}/unknown").status_code == 404


def test_bitfield_of_complete_artifact(server: str) -> None:
    digest = httpx.head(f"{server}/releases/big.bin").headers["webseed-manifest"]
    r = httpx.get(f"{server}/{WK}/bitfield/{digest}")
    assert r.status_code == 200
    chunks = int(r.headers["webseed-chunks"])
    assert chunks == -(-SIZE // (256 * 1024)) == 13
    assert r.content == b"\xff\xf8"
    assert httpx.get(f"{server}/{WK}/bitfield/{'1' * 64}").status_code == 404


def test_chunks_by_digest(server: str) -> None:
    digest = httpx.head(f"{server}/releases/big.bin").headers["webseed-manifest"]
    manifest = httpx.get(f"{server}/{WK}/manifests/{digest}.json").json()
    for index in (0, 12):
        c = manifest["chunks"][index]
        r = httpx.get(f"{server}/{WK}/chunks/{c}")
        assert r.status_code == 200
        start = index * 256 * 1024
        assert r.content == DATA[start : start + 256 * 1024]
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"] == f'"{c}"'
        part = httpx.get(f"{server}/{WK}/chunks/{c}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == DATA[start + 10 : start + 20]
    assert httpx.get(f"{server}/{WK}/chunks/{'2' * 64}").status_code == 404


def test_pex_is_empty_not_fake(server: str) -> None:
    r = httpx.get(f"{server}/{WK}/pex")
    assert r.status_code == 200 and r.json() == {"announcements": []}


def test_stats_count_bytes_per_artifact_and_peer(server: str) -> None:
    me = PeerIdentity.generate()
    before = httpx.get(f"{server}/{WK}/stats").json()
    httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=0-999"}, auth=PeerAuth(me))
    # An unsigned claimed id is not believed: those bytes count as anonymous.
    httpx.get(f"{server}/releases/big.bin", headers={"Range": "bytes=0-9", "Webseed-Peer": "x"})
    after = httpx.get(f"{server}/{WK}/stats").json()
    assert after["per_peer"][me.peer_id] == 1000
    assert "x" not in after["per_peer"]
    assert after["per_peer"][ANONYMOUS] >= before["per_peer"].get(ANONYMOUS, 0) + 10
    assert after["per_artifact"]["releases/big.bin"] >= 1000
    assert after["slots"] == {"capacity": 0, "in_use": 0, "waiting": 0}


def test_http2_prior_knowledge(server: str) -> None:
    with httpx.Client(http1=False, http2=True) as c:
        r = c.get(f"{server}/releases/big.bin", headers={"Range": "bytes=0-99,200-299"})
        assert r.http_version == "HTTP/2"
        assert r.status_code == 206
        parts = parse_multipart(r.headers["content-type"], r.content)
        assert [p[1] for p in parts] == [DATA[:100], DATA[200:300]]
        full = c.get(f"{server}/releases/big.bin")
        assert full.content == DATA


@pytest.mark.parametrize("path", ["releases/big.bin", f"{WK}/metadata/1.targets.json"])
def test_mounted_under_a_prefix(repo: Path, path: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    from webseed.asgi import create_app
    from webseed.server.standalone import running

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("home")

    parent = Starlette(routes=[Route("/", home), Mount("/mirror", app=create_app(repo))])
    with running(parent) as url:
        assert httpx.get(f"{url}/").text == "home"
        r = httpx.get(f"{url}/mirror/{path}", headers={"Range": "bytes=0-9"})
        assert r.status_code == 206
        assert r.content == (repo / path).read_bytes()[:10]
