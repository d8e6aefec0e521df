"""``webseed get`` with the swarm layers: peer exchange, identity, remembered peers.

Real ``webseed serve`` processes (and the real nginx) on 127.0.0.1 ephemeral ports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from typer.testing import CliRunner

from peer.discovery.bootstrap import load_last_served
from peer.incentives.client import PeerAuth
from peer.incentives.identity import PeerIdentity, load
from tests.nginx import Nginx, nginx_binary
from tests.prereq import missing
from tests.swarm.servers import webseed_serve
from tests.swarm.test_get_cli import PATH, published  # noqa: F401  (fixture)
from webseed.cli import app

runner = CliRunner()


@contextmanager
def serve(repo: Path, state: Path, *args: str) -> Iterator[str]:
    """A ``webseed serve`` process with its own state dir; yields its base URL."""
    with webseed_serve(repo, "--state-dir", str(state), *args) as url:
        yield url.rstrip("/")


def _wait_pex(url: str, wanted: list[str], limit: float = 20.0) -> None:
    """Until ``url``'s pex list names every URL in ``wanted`` (gossip converged)."""
    deadline = time.monotonic() + limit
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/.well-known/webseed/pex", timeout=5).text
        if all(w in text for w in wanted):
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} never listed {wanted}: {text[:300]}")


def _get(*args: str) -> dict[str, object]:
    res = runner.invoke(app, ["get", PATH, "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_get_grows_the_swarm_by_pex_and_remembers_who_served(
    published,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Started with ONE peer holding nothing, whose pex list names two holders: the
    download finishes from those two, they are remembered, and the next run (given no
    peer at all) finds one of them again from the remembered list."""
    repo, pub, data = published
    empty = tmp_path / "empty"
    empty.mkdir()
    state = tmp_path / "client"
    gossip = ("--gossip-interval", "1")
    with (
        serve(repo, tmp_path / "p1", "--discover", "--rate", "2M", *gossip) as p1,
        serve(repo, tmp_path / "p2", "--bootstrap", p1, "--rate", "2M", *gossip) as p2,
        serve(empty, tmp_path / "p0", "--bootstrap", p1, *gossip) as p0,
    ):
        _wait_pex(p0, [p1, p2])
        report = _get(
            "--root-key", str(pub), "-o", str(tmp_path / "a.iso"), "--peer", p0,
            "--index", p1, "--state-dir", str(state), "--seed", "2",
        )  # fmt: skip
        assert (tmp_path / "a.iso").read_bytes() == data
        by = {s["url"]: s for s in report["sources"]}  # type: ignore[attr-defined]
        assert by[p0]["bytes"] == 0
        assert by[p1]["bytes"] > 0 and by[p2]["bytes"] > 0, json.dumps(by)
        assert by[p1]["bytes"] + by[p2]["bytes"] == len(data)
        assert set(report["discovery"]["added"]) == {p1, p2}  # type: ignore[index]
        remembered = {p["url"]: p["bytes"] for p in load_last_served(state)}
        assert remembered == {p1: by[p1]["bytes"], p2: by[p2]["bytes"]}

        # Next run: only the index (served by p1, used as a mirror); p2 joins from the
        # remembered list (its bitfield probe says it holds the artifact).
        again = _get(
            "--root-key", str(pub), "-o", str(tmp_path / "b.iso"), "--index", p1,
            "--state-dir", str(state), "--seed", "3",
        )  # fmt: skip
    assert (tmp_path / "b.iso").read_bytes() == data
    kinds = {s["url"]: s["kind"] for s in again["sources"]}  # type: ignore[attr-defined]
    assert kinds.get(p2) == "peer", kinds
    assert p2 in again["discovery"]["added"]  # type: ignore[index]


def test_serving_peer_credits_the_downloaders_identity(
    published,  # noqa: F811
    tmp_path: Path,
) -> None:
    """With an identity (the default) the serving peer's stats credit our peer id; with
    --anonymous it counts the bytes as anonymous; --no-discover remembers nothing."""
    repo, pub, data = published
    state = tmp_path / "client"
    with serve(repo, tmp_path / "peer") as peer:
        signed = _get(
            "--root-key", str(pub), "-o", str(tmp_path / "a.iso"), "--peer", peer,
            "--state-dir", str(state), "--no-discover",
        )  # fmt: skip
        anon = _get(
            "--root-key", str(pub), "-o", str(tmp_path / "b.iso"), "--peer", peer,
            "--state-dir", str(tmp_path / "anon"), "--anonymous", "--no-discover",
        )  # fmt: skip
        stats = httpx.get(f"{peer}/.well-known/webseed/stats", timeout=5).json()
    me = load(state / "identity").peer_id
    assert signed["identity"] == me and anon["identity"] is None
    # Every artifact byte went to our id; the anonymous ones are the second download
    # plus the index and manifest fetches of both (those are not signed).
    assert stats["per_peer"][me] >= len(data)
    assert stats["per_peer"]["(anonymous)"] >= len(data)
    assert stats["incentives"]["ledger"]["peers"] >= 1
    assert stats["incentives"]["rejected_identity_headers"] == 0
    assert "discovery" not in signed and load_last_served(state) == []
    assert (tmp_path / "a.iso").read_bytes() == data == (tmp_path / "b.iso").read_bytes()


def test_nginx_mirror_with_and_without_identity(published, tmp_path: Path) -> None:  # noqa: F811
    """A plain nginx mirror serves both an anonymous and an identified download (mirrors get
    no identity header), and a signed request does not break it either."""
    if nginx_binary() is None:
        missing("nginx not installed")
    repo, pub, data = published
    with Nginx(repo) as mirror:
        for i, who in enumerate(("--anonymous", "--identity")):
            out = tmp_path / f"{i}.iso"
            report = _get(
                "--root-key", str(pub), "-o", str(out), "--mirror", mirror.url,
                "--state-dir", str(tmp_path / "s"), who,
            )  # fmt: skip
            assert out.read_bytes() == data and report["banned"] == {}
        auth = PeerAuth(PeerIdentity.generate())
        resp = httpx.get(
            f"{mirror.url}/{PATH}", headers={"Range": "bytes=0-99"}, auth=auth, timeout=5
        )
    assert resp.status_code == 206 and resp.content == data[:100]
