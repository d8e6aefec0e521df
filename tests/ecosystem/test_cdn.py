"""A real caching proxy (nginx ``proxy_cache``) in front of a real `webseed serve` peer.

Content-addressed URLs (chunks by digest, manifests by digest) carry
``Cache-Control: public, max-age=31536000, immutable``, so a CDN keeps them:
the second client is answered from the cache and the peer sends the bytes once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, nginx_binary
from tests.prereq import missing
from tests.server.helpers import publish, rand

DATA = rand(1024 * 1024 + 5, seed=31)
CHUNK = 256 * 1024

NGINX_CACHE_CONF = """
{user}
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=webseed:1m max_size=64m inactive=1d
                     use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache webseed;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
}}
"""


@pytest.fixture
def caching_proxy(tmp_path: Path) -> Iterator[object]:
    """``start(upstream_url) -> proxy_url``: nginx with proxy_cache, its own config in tmp."""
    binary = nginx_binary()
    if binary is None:
        missing("nginx not installed (Debian nginx-light; make system-deps)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream: str) -> str:
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        port = free_port()
        user = "user root;" if os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CACHE_CONF.format(user=user, prefix=prefix, port=port, upstream=upstream)
        )
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}"
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {(prefix / 'error.log').read_text()}")

    yield start
    for proc in procs:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


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
