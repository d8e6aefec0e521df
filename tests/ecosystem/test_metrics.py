"""The Prometheus endpoint, scraped and parsed with prometheus_client's own parser; JSON logs."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.helpers import publish, rand
from webseed.server.app import create_app
from webseed.server.metrics import (
    JsonFormatter,
    PeerMetrics,
    configure_json_logs,
    kind_of,
)
from webseed.server.standalone import ServerOptions, ServerThread

DATA = rand(1024 * 1024 + 99, seed=21)
WK = "/.well-known/webseed"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{url}{WK}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_what_was_sent(tmp_path: Path) -> None:
    manifest = publish(tmp_path, "pool/x.bin", DATA, chunk_size=256 * 1024)
    app = create_app(tmp_path, slots=1, max_wait=0.05)
    peer = app.state.peer
    with ServerThread(app, ServerOptions(port=0)) as url, httpx.Client(base_url=url) as c:
        assert len(c.get("/pool/x.bin").content) == len(DATA)
        assert c.get("/pool/x.bin", headers={"range": "bytes=0-99"}).status_code == 206
        assert c.get(f"{WK}/chunks/{manifest.chunks[1]}").status_code == 200
        man = c.get(f"{WK}/manifests/{manifest.digest}.json")
        meta = c.get(f"{WK}/metadata/1.targets.json")
        assert c.get("/missing").status_code == 404
        assert peer.pool.try_acquire()  # every slot taken: the next upload waits, then 503
        try:
            busy = c.get("/pool/x.bin")
            assert busy.status_code == 503
            m = scrape(url)
        finally:
            peer.pool.release()
        peer.metrics.record_received("peer", 1000)
        peer.metrics.record_received("carrier-pigeon", 5)
        peer.metrics.record_verification_failure("mirror")
        peer.metrics.record_ban("corrupt")
        peer.metrics.record_mirror_health("http://m1/", True, 2.5e6)
        peer.metrics.record_mirror_health("http://m2/", False)
        after = scrape(url)

    def v(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    assert v("webseed_bytes_served_total", kind="artifact") == len(DATA) + 100
    assert v("webseed_bytes_served_total", kind="chunk") == 256 * 1024
    assert v("webseed_bytes_served_total", kind="manifest") == len(man.content)
    assert v("webseed_bytes_served_total", kind="metadata") == len(meta.content)
    assert v("webseed_http_requests_total", status="200") == 4
    assert v("webseed_http_requests_total", status="206") == 1
    assert v("webseed_http_requests_total", status="404") == 1
    assert v("webseed_http_requests_total", status="503") == 1
    assert v("webseed_over_capacity_total") == 1
    assert v("webseed_range_requests_total") == 1
    assert v("webseed_upload_slots", state="capacity") == 1
    assert v("webseed_upload_slots", state="in_use") == 1
    assert v("webseed_bytes_received_total", source_kind="peer") == 0

    def w(name: str, **labels: str) -> float:
        return after[(name, tuple(sorted(labels.items())))]

    # The first scrape's own bytes are counted by the second one.
    assert w("webseed_bytes_served_total", kind="api") > 0
    assert w("webseed_upload_slots", state="in_use") == 0
    assert w("webseed_bytes_received_total", source_kind="peer") == 1000
    assert w("webseed_bytes_received_total", source_kind="other") == 5
    assert w("webseed_verification_failures_total", source_kind="mirror") == 1
    assert w("webseed_bans_total", reason="corrupt") == 1
    assert w("webseed_mirror_up", mirror="http://m1/") == 1
    assert w("webseed_mirror_up", mirror="http://m2/") == 0
    assert w("webseed_mirror_rate_bytes_per_second", mirror="http://m1/") == 2.5e6
    assert w("webseed_mirror_probes_total", result="fail") == 1


def test_registries_are_per_app_and_mirror_labels_bounded() -> None:
    a, b = PeerMetrics(), PeerMetrics()
    a.answered(200, "artifact", 10, ranged=False)
    assert b'webseed_bytes_served_total{kind="artifact"} 0.0' in b.render()
    assert b'webseed_bytes_served_total{kind="artifact"} 10.0' in a.render()
    a.answered(200, "bogus", 3, ranged=False)
    assert b'webseed_bytes_served_total{kind="api"} 3.0' in a.render()
    for i in range(300):
        a.record_mirror_health(f"http://m{i}/", True)
    assert a.render().count(b"webseed_mirror_up{") == 256
    assert b"webseed_upload_slots" in a.render()  # no pool: the family exists, empty
    a.record_ban("")
    assert b'reason="unknown"' in a.render()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/pool/x.deb", "artifact"),
        ("/m/.well-known/webseed/chunks/ab", "chunk"),
        ("/.well-known/webseed/manifests/ab.json", "manifest"),
        ("/.well-known/webseed/metadata/root.json", "metadata"),
        ("/.well-known/webseed/stats", "api"),
        ("/x.iso.meta4", "export"),
        ("/x.iso.torrent", "export"),
    ],
)
def test_kind_of(path: str, kind: str) -> None:
    assert kind_of(path) == kind


def test_serve_log_json(tmp_path: Path, webseed_peer) -> None:
    publish(tmp_path / "repo", "a.bin", DATA[:5000])
    url, stderr = webseed_peer(tmp_path / "repo", "--log-json")
    assert httpx.get(f"{url}/a.bin", headers={"range": "bytes=0-9"}).status_code == 206
    deadline = time.monotonic() + 10
    records: list[dict[str, object]] = []
    while time.monotonic() < deadline and not records:
        records = [
            json.loads(line)
            for line in stderr.read_text().splitlines()
            if line.startswith("{") and '"/a.bin"' in line
        ]
        time.sleep(0.05)
    assert records, stderr.read_text()
    rec = records[0]
    assert rec["logger"] == "webseed.access" and rec["level"] == "info"
    assert (rec["method"], rec["path"], rec["status"], rec["bytes"], rec["range"]) == (
        "GET",
        "/a.bin",
        206,
        10,
        True,
    )
    assert isinstance(rec["duration_ms"], float) and rec["client"] == "127.0.0.1"


def test_json_formatter_exceptions() -> None:
    import io

    stream = io.StringIO()
    handler = configure_json_logs(stream)
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("webseed.test").exception("it failed")
    finally:
        logger = logging.getLogger("webseed")
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    rec = json.loads(stream.getvalue())
    assert rec["msg"] == "it failed" and "ValueError: boom" in rec["exc"]
    assert isinstance(JsonFormatter(), logging.Formatter)


def test_wsgi_middleware_counts_its_own_answers_only(tmp_path: Path) -> None:
    from wsgiref.util import setup_testing_defaults

    from webseed.wsgi import WebseedMiddleware

    publish(tmp_path, "a.bin", DATA[:3000])

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"the host app"]

    mw = WebseedMiddleware(inner, tmp_path, prefix="")

    def call(path: str, **extra: str) -> tuple[str, bytes]:
        environ: dict[str, object] = {}
        setup_testing_defaults(environ)
        environ.update(PATH_INFO=path, **extra)
        status: list[str] = []
        body = mw(environ, lambda s, h, e=None: status.append(s))
        try:
            return status[0], b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()

    assert call("/a.bin") == ("200 OK", DATA[:3000])
    assert call("/a.bin", HTTP_RANGE="bytes=0-9")[0] == "206 Partial Content"
    assert call("/elsewhere") == ("200 OK", b"the host app")  # the host app's, not counted
    _, text = call(f"{WK}/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text.decode())
        for s in f.samples
    }
    assert samples[("webseed_bytes_served_total", (("kind", "artifact"),))] == 3010
    assert samples[("webseed_http_requests_total", (("status", "200"),))] == 1
    assert samples[("webseed_range_requests_total", ())] == 1
