"""A real caching proxy (nginx ``proxy_cache``) in front of a real `webseed serve` peer.

Content-addressed URLs (chunks by digest, manifests by digest) carry
``Cache-Control: public, max-age=31536000, immutable``, so a CDN keeps them:
the second client is answered from the cache and the peer sends the bytes once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.nginx import Nginx, nginx_binary
from tests.prereq import missing
from tests.server.helpers import publish, rand

DATA = rand(1024 * 1024 + 5, seed=31)
CHUNK = 256 * 1024

CACHE_HTTP = """
proxy_cache_path {dir}/cache levels=1:2 keys_zone=webseed:1m max_size=64m inactive=1d
                 use_temp_path=off;
"""
CACHE_SERVER = """
location / {{
    proxy_pass {upstream};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache webseed;
    proxy_cache_lock on;
    add_header X-Cache-Status $upstream_cache_status always;
}}
"""


@pytest.fixture
def caching_proxy() -> Iterator[object]:
    """``start(upstream_url) -> proxy_url``: nginx with proxy_cache, its own config in tmp."""
    if nginx_binary() is None:
        missing("nginx not installed (Debian nginx-light; make system-deps)")
    started: list[Nginx] = []

    def start(upstream: str) -> str:
        proxy = Nginx(http=CACHE_HTTP, server=CACHE_SERVER.format(upstream=upstream))
        started.append(proxy.__enter__())
        return proxy.url

    yield start
    for proxy in started:
        proxy.__exit__()


def served(peer: str) -> dict[str, float]:
    text = httpx.get(f"{peer}/.well-known/webseed/metrics").text
    return {
        s.labels["kind"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "webseed_bytes_served_total"
    }


def test_second_client_is_served_from_the_cache(
    tmp_path: Path, webseed_peer, caching_proxy
) -> None:
    manifest = publish(tmp_path / "repo", "pool/x.bin", DATA, chunk_size=CHUNK)
    peer, _ = webseed_peer(tmp_path / "repo")
    cdn = caching_proxy(peer)
    chunk_url = f"{cdn}/.well-known/webseed/chunks/{manifest.chunks[2]}"
    manifest_url = f"{cdn}/.well-known/webseed/manifests/{manifest.digest}.json"
    statuses = []
    for _client in range(2):  # two clients, each with its own connection
        with httpx.Client() as c:
            r = c.get(chunk_url)
            assert r.status_code == 200
            assert r.content == DATA[2 * CHUNK : 3 * CHUNK]
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
            m = c.get(manifest_url)
            assert m.content == manifest.encode()
            statuses.append((r.headers["x-cache-status"], m.headers["x-cache-status"]))
    assert statuses == [("MISS", "MISS"), ("HIT", "HIT")]
    # The peer sent the chunk and the manifest once, whatever the number of clients.
    counts = served(peer)
    assert counts["chunk"] == CHUNK
    assert counts["manifest"] == len(manifest.encode())
    stats = httpx.get(f"{peer}/.well-known/webseed/stats").json()
    assert stats["per_artifact"] == {f"chunks/{manifest.chunks[2]}": CHUNK}
    # A range of a cached chunk is cut from the cache too.
    r = httpx.get(chunk_url, headers={"range": "bytes=10-19"})
    assert (r.status_code, r.content) == (206, DATA[2 * CHUNK + 10 : 2 * CHUNK + 20])
    assert r.headers["x-cache-status"] == "HIT"
    assert served(peer)["chunk"] == CHUNK
