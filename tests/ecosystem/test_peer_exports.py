"""On-the-fly `.meta4` / `.torrent` from real `webseed serve` peers, used by aria2c and libtorrent."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.conftest import write_random
from tests.ecosystem.conftest import keygen, libtorrent_download, publish_cli
from tests.prereq import needs
from webseed.export.bencode import bdecode
from webseed.export.metalink import NS
from webseed.server.app import create_app
from webseed.server.pex import MemoryPexStore
from webseed.server.standalone import ServerOptions, ServerThread
from webseed.wsgi import WebseedMiddleware

SIZE = 3 * 1024 * 1024 + 4321
DEAD = "http://127.0.0.1:9/dead"
ISO = "releases/big-3.0.iso"


@pytest.fixture
def signed_repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(src, repo, private key): a published repository with one multi-chunk artifact."""
    src = tmp_path / "src"
    write_random(src / ISO, SIZE, seed=5)
    (src / "notes.txt").write_text("not an artifact once removed from the index\n")
    key, _pub = keygen(tmp_path / "k")
    publish_cli(src, tmp_path / "repo", key)
    return src, tmp_path / "repo", key


def republish_with_mirrors(src: Path, repo: Path, key: Path, urls: list[str]) -> None:
    mirrors = repo.parent / "mirrors.json"
    mirrors.write_text(json.dumps([{"url": u, "country": "NL"} for u in urls]))
    publish_cli(src, repo, key, "--mirrors", str(mirrors))


def metalink_urls(doc: bytes) -> list[str]:
    return [u.text or "" for u in ET.fromstring(doc).findall(f".//{{{NS}}}url")]


def wait_for_mirror(url: str, needle: str) -> bytes:
    """The peer re-reads the index within about a second of a publish."""
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200, r.text
        if needle.encode() in r.content or time.monotonic() > deadline:
            return r.content
        time.sleep(0.2)


@needs(shutil.which("aria2c") is None, "Debian aria2 not installed")
def test_aria2c_downloads_from_peers_given_the_peers_meta4(
    tmp_path: Path, signed_repo: tuple[Path, Path, Path], webseed_peer
) -> None:
    src, repo, key = signed_repo
    a, _ = webseed_peer(repo)
    b, _ = webseed_peer(repo)
    republish_with_mirrors(src, repo, key, [b, DEAD])
    doc = wait_for_mirror(f"{a}/{ISO}.meta4", b)
    r = httpx.get(f"{a}/{ISO}.meta4")
    assert r.headers["content-type"] == "application/metalink4+xml"
    # This peer first, then the signed mirrors in the index's order.
    assert metalink_urls(doc) == [f"{a}/{ISO}", f"{b}/{ISO}", f"{DEAD}/{ISO}"]
    root = ET.fromstring(doc)
    data = (repo / ISO).read_bytes()
    assert root.find(f".//{{{NS}}}hash[@type='sha-256']").text == hashlib.sha256(data).hexdigest()  # type: ignore[union-attr]
    pieces = [h.text for h in root.findall(f".//{{{NS}}}pieces/{{{NS}}}hash")]
    chunk = int(root.find(f".//{{{NS}}}pieces").get("length"))  # type: ignore[union-attr, arg-type]
    assert pieces == [
        hashlib.sha256(data[i : i + chunk]).hexdigest() for i in range(0, len(data), chunk)
    ]
    dl = tmp_path / "dl"
    proc = subprocess.run(
        [
            "aria2c",
            "--no-conf",
            "-q",
            "-d",
            str(dl),
            f"{a}/{ISO}.meta4",
            "--follow-metalink=mem",
            "--min-split-size=1M",
            "--split=4",
            "--connect-timeout=2",
            "--max-tries=2",
            "--retry-wait=0",
            "--check-integrity=true",
            "--allow-overwrite=true",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dl / "big-3.0.iso").read_bytes() == data
    served = [httpx.get(f"{p}/.well-known/webseed/stats").json()["per_artifact"] for p in (a, b)]
    total = sum(s.get(ISO, 0) for s in served)
    assert total >= SIZE  # the artifact's bytes came from the two peers (the mirror is dead)


def test_libtorrent_downloads_from_peers_given_the_peers_torrent(
    tmp_path: Path, signed_repo: tuple[Path, Path, Path], webseed_peer
) -> None:
    src, repo, key = signed_repo
    a, _ = webseed_peer(repo)
    b, _ = webseed_peer(repo)
    republish_with_mirrors(src, repo, key, [b])
    raw = wait_for_mirror(f"{a}/{ISO}.torrent", b)
    r = httpx.get(f"{a}/{ISO}.torrent")
    assert r.headers["content-type"] == "application/x-bittorrent"
    assert bdecode(raw)[b"url-list"] == [f"{a}/releases/".encode(), f"{b}/releases/".encode()]
    libtorrent_download(raw, tmp_path / "bt", "big-3.0.iso", (repo / ISO).read_bytes())
    served = [httpx.get(f"{p}/.well-known/webseed/stats").json()["bytes_served"] for p in (a, b)]
    assert sum(served) >= SIZE


def test_export_edges_under_a_mount_prefix(signed_repo: tuple[Path, Path, Path]) -> None:
    _src, repo, _key = signed_repo
    (repo / "releases" / "literal.torrent").write_bytes(b"a file that is really there")
    (repo / "unlisted.bin").write_bytes(b"x" * 10)
    pex = MemoryPexStore()
    pex.add("p1", {"url": "http://198.18.0.5:8470/"})
    pex.add("p2", {"urls": ["https://198.18.0.6/r", "ftp://no", 5]})
    pex.add("p3", {"nothing": True})
    peer_app = create_app(repo, pex=pex)
    host = Starlette(routes=[Mount("/mirror", peer_app)])
    with ServerThread(host, ServerOptions(port=0)) as url, httpx.Client(base_url=url) as c:
        base = f"{url}/mirror"
        meta = c.get(f"/mirror/{ISO}.meta4")
        assert meta.status_code == 200
        assert metalink_urls(meta.content) == [
            f"{base}/{ISO}",
            f"https://198.18.0.6/r/{ISO}",
            f"http://198.18.0.5:8470/{ISO}",
        ]
        torrent = bdecode(c.get(f"/mirror/{ISO}.torrent").content)
        assert torrent[b"url-list"][0] == f"{base}/releases/".encode()
        head = c.head(f"/mirror/{ISO}.torrent")
        assert head.status_code == 200 and head.content == b""
        assert c.get("/mirror/releases/literal.torrent").content == b"a file that is really there"
        assert c.get("/mirror/releases/nothing.iso.meta4").status_code == 404
        assert c.get("/mirror/unlisted.bin.meta4").status_code == 404  # not in the index
        assert c.get("/mirror/.meta4").status_code == 404
        assert c.get("/mirror/.well-known/webseed/x.meta4").status_code == 404
        assert c.get("/mirror/a/%2e%2e/b.meta4").status_code == 400
        exports = peer_app.state.peer.exports
        assert len(exports._pieces) == 1  # cached per manifest digest
        # A file changed behind the index (same size, old mtime kept): no piece hashes.
        st = (repo / ISO).stat()
        with open(repo / ISO, "r+b") as f:
            f.write(b"\0" * 10)
        os.utime(repo / ISO, ns=(st.st_atime_ns, st.st_mtime_ns))
        exports._pieces.clear()
        stale = ET.fromstring(c.get(f"/mirror/{ISO}.meta4").content)
        assert stale.find(f".//{{{NS}}}pieces") is None
        assert exports.mismatches == 1


def test_export_from_wsgi_middleware_and_piece_cache_bound(
    signed_repo: tuple[Path, Path, Path],
) -> None:
    from wsgiref.util import setup_testing_defaults

    _src, repo, _key = signed_repo

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("418 I'm a teapot", [("content-type", "text/plain")])
        return [b"app"]

    mw = WebseedMiddleware(inner, repo, prefix="/ws")
    environ: dict[str, object] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=f"/ws/{ISO}.meta4", HTTP_HOST="example.org:8080", SCRIPT_NAME="/app")
    got: list[str] = []
    body = b"".join(mw(environ, lambda status, headers: got.append(status)))
    assert got == ["200 OK"]
    assert metalink_urls(body) == [f"http://example.org:8080/app/ws/{ISO}"]
    exports = mw.peer.exports
    assert len(exports._pieces) == 1
    exports.cache_size = 0
    exports._pieces.clear()
    b"".join(mw(environ, lambda status, headers: None))
    assert len(exports._pieces) == 0  # the LRU never grows past its bound
