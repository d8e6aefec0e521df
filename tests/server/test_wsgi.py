"""The WSGI middleware under real WSGI servers (wsgiref, Hypercorn's WSGI mode); the examples."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from tests.server.helpers import WK, parse_multipart, publish, rand, raw_request, status_of
from webseed.server.standalone import ServerOptions, ServerThread
from webseed.wsgi import WebseedMiddleware

DATA = rand(1024 * 1024 + 333, seed=5)
ROOT = Path(__file__).resolve().parents[2]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wsgi")
    publish(root, "dist/pkg.whl", DATA)
    return root


def serve_wsgi(app: Any) -> Iterator[str]:
    httpd = make_server("127.0.0.1", 0, app, server_class=_Threading, handler_class=_Quiet)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


@pytest.fixture(scope="module")
def flask_url(repo: Path) -> Iterator[str]:
    import flask  # noqa: F401 (a dev dependency runs the WSGI example)

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import wsgi_flask
    finally:
        sys.path.remove(str(ROOT / "examples"))
    yield from serve_wsgi(wsgi_flask.build(str(repo)))


def _inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner"]


@pytest.fixture(scope="module")
def wsgi_url(repo: Path) -> Iterator[str]:
    """The middleware under /webseed in front of a plain WSGI app, on wsgiref threads."""
    yield from serve_wsgi(WebseedMiddleware(_inner, repo, prefix="/webseed"))


def test_wrapped_app_gets_the_rest(wsgi_url: str) -> None:
    assert httpx.get(f"{wsgi_url}/").text == "inner"
    assert httpx.get(f"{wsgi_url}/webseedish").text == "inner"


def test_flask_keeps_its_routes(flask_url: str) -> None:
    assert httpx.get(f"{flask_url}/").json() == {"app": "example", "mirror": "/webseed/"}
    assert httpx.get(f"{flask_url}/elsewhere").status_code == 404  # Flask's own 404
    r = httpx.get(f"{flask_url}/webseed/dist/pkg.whl", headers={"Range": "bytes=0-99,200-299"})
    assert r.status_code == 206
    assert [p[1] for p in parse_multipart(r.headers["content-type"], r.content)] == [
        DATA[:100],
        DATA[200:300],
    ]


def test_full_single_and_multipart(wsgi_url: str) -> None:
    base = f"{wsgi_url}/webseed/dist/pkg.whl"
    full = httpx.get(base)
    assert full.status_code == 200 and full.content == DATA
    assert full.headers["etag"] == f'"{full.headers["webseed-manifest"]}"'
    one = httpx.get(base, headers={"Range": "bytes=1000-1999"})
    assert one.status_code == 206 and one.content == DATA[1000:2000]
    multi = httpx.get(base, headers={"Range": "bytes=0-99,200-299"})
    assert multi.status_code == 206
    assert [p[1] for p in parse_multipart(multi.headers["content-type"], multi.content)] == [
        DATA[:100],
        DATA[200:300],
    ]
    head = httpx.head(base, headers={"Range": "bytes=0-99,200-299"})
    assert head.headers["content-length"] == multi.headers["content-length"]
    assert head.content == b""


def test_bad_input(wsgi_url: str) -> None:
    base = f"{wsgi_url}/webseed/dist/pkg.whl"
    r = httpx.get(base, headers={"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(3000))})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(DATA)}"
    assert (
        status_of(raw_request(wsgi_url, b"GET /webseed/%2e%2e/%2e%2e/etc/passwd HTTP/1.0\r\n\r\n"))
        == 400
    )
    assert status_of(raw_request(wsgi_url, b"GET /webseed/a%ff HTTP/1.0\r\n\r\n")) == 400
    assert httpx.post(base).status_code == 405
    assert httpx.get(f"{wsgi_url}/webseed/nope").status_code == 404
    assert httpx.get(base, headers={"Range": "bytes=0-9"}).content == DATA[:10]


def test_well_known_through_wsgi(wsgi_url: str) -> None:
    digest = httpx.head(f"{wsgi_url}/webseed/dist/pkg.whl").headers["webseed-manifest"]
    m = httpx.get(f"{wsgi_url}/webseed/{WK}/manifests/{digest}.json")
    assert m.status_code == 200 and m.json()["size"] == len(DATA)
    stats = httpx.get(f"{wsgi_url}/webseed/{WK}/stats").json()
    assert stats["per_artifact"]["dist/pkg.whl"] >= len(DATA)


def test_slots_full_is_503(repo: Path) -> None:
    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"inner"]

    mw = WebseedMiddleware(inner, repo, prefix="", slots=1)
    for url in serve_wsgi(mw):
        assert httpx.get(f"{url}/other").text == "inner"  # prefix "": our 404s pass through
        assert mw.peer.pool.try_acquire()  # someone holds the only slot
        r = httpx.get(f"{url}/dist/pkg.whl")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        mw.peer.pool.release()
        assert httpx.get(f"{url}/dist/pkg.whl").content == DATA
        # The server calls the body's close() just after the last byte went out.
        for _ in range(100):
            if mw.peer.pool.in_use == 0:
                break
            time.sleep(0.01)
        assert mw.peer.pool.in_use == 0


def test_under_hypercorn_wsgi_mode(repo: Path) -> None:
    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"inner"]

    mw = WebseedMiddleware(inner, repo, prefix="/ws")
    with ServerThread(mw, ServerOptions(port=0), mode="wsgi") as url:
        assert httpx.get(f"{url}/").text == "inner"
        r = httpx.get(f"{url}/ws/dist/pkg.whl", headers={"Range": "bytes=-500"})
        assert r.status_code == 206 and r.content == DATA[-500:]


@pytest.mark.parametrize(
    ("script", "prefix"), [("asgi_app.py", "/mirror"), ("wsgi_flask.py", "/webseed")]
)
def test_examples_run(repo: Path, script: str, prefix: str) -> None:
    if script == "wsgi_flask.py":
        import flask  # noqa: F401 (a dev dependency runs the WSGI example)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / script), str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = re.search(r"http://\S+", proc.stdout.readline()).group(0)  # type: ignore[union-attr]
        assert httpx.get(f"{url}/").json()["app"] == "example"
        r = httpx.get(f"{url}{prefix}/dist/pkg.whl", headers={"Range": "bytes=0-99,200-299"})
        assert r.status_code == 206
        assert [p[1] for p in parse_multipart(r.headers["content-type"], r.content)] == [
            DATA[:100],
            DATA[200:300],
        ]
    finally:
        proc.terminate()
        proc.wait(10)
