"""`webseed.resolve.resolve_url` against real servers: a peer mounted under a prefix, a static mirror."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from tests.conftest import write_random
from tests.ecosystem.conftest import keygen, publish_cli
from webseed.errors import RepositoryIndexError
from webseed.index.client import local_root_key, open_index_once
from webseed.resolve import Resolved, candidate_prefixes, resolve_url
from webseed.server.app import create_app
from webseed.server.standalone import ServerOptions, ServerThread

DEB = "pool/main/w/webseed-demo/webseed-demo_1.0 1_all.deb"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("resolve")
    write_random(tmp / "src" / DEB, 70_000, seed=8)
    key, _ = keygen(tmp / "k")
    publish_cli(tmp / "src", tmp / "repo", key)
    return tmp / "repo"


def test_candidates() -> None:
    assert candidate_prefixes("https://m.example/debian/pool/x.deb?x=1#f") == [
        ("https://m.example/debian/pool", "x.deb"),
        ("https://m.example/debian", "pool/x.deb"),
        ("https://m.example", "debian/pool/x.deb"),
    ]
    assert len(candidate_prefixes("http://h/" + "d/" * 40 + "f", max_probes=5)) == 5
    assert candidate_prefixes("http://h/" + "d/" * 40 + "f", max_probes=5)[-1][0] == "http://h"
    for bad in ("ftp://h/x", "http:///x", "http://h/", "http://h", "http://h/dir/", "/x"):
        with pytest.raises(RepositoryIndexError):
            candidate_prefixes(bad)
    with pytest.raises(RepositoryIndexError, match="UTF-8"):
        candidate_prefixes("http://h/r/%ff.deb")


def test_resolves_a_peer_mounted_under_a_prefix(signed: Path) -> None:
    async def catch_all(request: Request) -> HTMLResponse:
        # A host app that answers 200 to everything must not pass for a repository.
        return HTMLResponse("<html>welcome</html>")

    host = Starlette(
        routes=[
            Mount("/debian", create_app(signed)),
            Route("/{path:path}", catch_all),
        ]
    )
    with ServerThread(host, ServerOptions(port=0)) as url:
        quoted = DEB.replace(" ", "%20")
        got = resolve_url(f"{url}/debian/{quoted}")
        assert got == Resolved(f"{url}/debian", DEB)
        # What `webseed get` does next: open the signed index there, look the path up.
        index = open_index_once(got.base_url, local_root_key(signed))
        assert index.lookup(got.repo_path).size == 70_000
        assert httpx.get(f"{got.base_url}/{quoted}").status_code == 200
        with pytest.raises(RepositoryIndexError, match="no webseed repository"):
            resolve_url(f"{url}/elsewhere/pool/x.deb")
        with httpx.Client(timeout=2) as c:
            assert resolve_url(f"{url}/debian/{quoted}", client=c).repo_path == DEB


def test_resolves_a_static_mirror_at_the_root(signed: Path, static_server) -> None:
    url = static_server(signed)
    assert resolve_url(f"{url}/{DEB}") == Resolved(url, DEB)


def test_unreachable_host() -> None:
    with pytest.raises(RepositoryIndexError):
        resolve_url("http://127.0.0.1:9/debian/pool/x.deb", timeout=1)
