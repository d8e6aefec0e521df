"""The engine finds more sources by peer exchange (real servers on 127.0.0.1).

The hostile pex peer is a real webseed server app whose pex store was filled
by the test with forged, unsigned and expired announcements (a real peer's
gossip store would never keep them, so a hostile peer is the only way to
serve them).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from peer.discovery.announce import build
from peer.engine import SourceSpec, download
from peer.engine.identity import SwarmAuth
from peer.engine.more_sources import PexFinder, SourceNeed
from peer.incentives.identity import PeerIdentity
from tests.swarm.conftest import CHUNK, Artifact
from tests.swarm.servers import Server, source
from webseed.server.app import create_app
from webseed.server.pex import MemoryPexStore


def _hostile_pex_peer(tmp_path: Path, announcements: list[dict[str, object]]) -> Server:
    """A real webseed server holding nothing, publishing ``announcements`` as its pex list."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    store = MemoryPexStore()
    for i, ann in enumerate(reversed(announcements)):
        store.add(str(i), ann)
    return Server(create_app(empty, pex=store))


def test_need_more_sources_adds_verified_holders_only(
    artifact: Artifact, out_dir: Path, tmp_path: Path
) -> None:
    """One useless peer; its pex list names one honest holder and forged/unsigned/expired
    ones pointing at another holder: only the honest one is used, and the finder is
    asked because the scheduler said NeedMoreSources (not at the start)."""
    digest = artifact.manifest.digest
    now = time.time()
    honest_srv, honest = source(artifact.root)
    trap_srv, trap = source(artifact.root)
    with honest_srv, trap_srv:
        good = build(PeerIdentity.generate(), [honest_srv.url], now, have=[digest]).to_json()
        forged = build(PeerIdentity.generate(), [honest_srv.url + "/x"], now, have=[digest])
        tampered = {**forged.to_json(), "urls": [trap_srv.url]}  # signature no longer matches
        unsigned = {k: v for k, v in tampered.items() if k != "sig"}
        stale = build(
            PeerIdentity.generate(), [trap_srv.url], now - 4000, have=[digest], lifetime=3600
        ).to_json()
        stolen = {**good, "urls": [trap_srv.url]}  # the honest peer's id, another URL
        hostile = _hostile_pex_peer(tmp_path, [tampered, unsigned, stale, stolen, good])
        with hostile:
            finder = PexFinder(digest, want_peers=1)
            report = asyncio.run(
                download(
                    artifact.manifest,
                    [SourceSpec(hostile.url)],
                    out_dir / "a.bin",
                    finder=finder,
                    seed=1,
                    give_up_after=20,
                )
            )
    assert (out_dir / "a.bin").read_bytes() == artifact.data
    by = {s.url: s for s in report.sources}
    assert by[honest_srv.url].bytes == artifact.manifest.size
    assert trap_srv.url not in by and trap.requests == []
    assert finder.verdicts["rejected"] == 4 and finder.verdicts["added"] == 1
    assert finder.reasons and finder.reasons[0] != "start"
    assert "missing chunks have no source" in finder.reasons[0]
    assert len(honest.requests) > 0


def test_finder_is_bounded_and_never_offers_known_or_self(artifact: Artifact) -> None:
    """Banned/known sources and our own announcement are never offered; rounds are capped;
    an unreachable contact or a non-pex server is an error noted, not a crash."""
    digest = artifact.manifest.digest
    me = PeerIdentity.generate()
    now = time.time()
    srv_a, _ = source(artifact.root)
    srv_b, _ = source(artifact.root)
    srv_c, _ = source(artifact.root, holds={0}, chunk_size=CHUNK, digest=digest)
    with srv_a, srv_b, srv_c:
        anns = [
            build(me, [srv_a.url], now, have=[digest]).to_json(),  # ourselves
            build(PeerIdentity.generate(), [srv_b.url], now, have=[digest]).to_json(),
            build(PeerIdentity.generate(), ["http://127.0.0.1:9"], now, have=[]).to_json(),
        ]
        pex = Server(create_app(artifact.root, pex=_store(anns)))
        with pex:
            finder = PexFinder(
                digest,
                bootstrap=["http://127.0.0.1:9", srv_a.url, "not a url"],
                candidates=["http://127.0.0.1:9", srv_b.url, pex.url, srv_c.url],
                self_id=me.peer_id,
                max_rounds=3,
                per_round=4,
                timeout=2.0,
            )

            async def rounds() -> list[list[SourceSpec]]:
                async with httpx.AsyncClient() as client:
                    known = frozenset({srv_b.url})  # e.g. banned earlier in this download
                    out = []
                    for _ in range(4):
                        need = SourceNeed("more", 3, (pex.url,), known)
                        out.append(await finder.find(need, client))
                    return out

            found = asyncio.run(rounds())
    offered = [s.base for round_ in found for s in round_]
    assert srv_a.url not in offered  # our own announcement
    assert srv_b.url not in offered  # known (banned) source
    # Remembered peers: only the one whose bitfield says it holds chunks of this artifact.
    assert offered == [srv_c.url]
    assert finder.rounds == 3 and found[3] == [] and finder.exhausted
    rep = finder.report()
    assert rep["announcements"]["self"] == 1
    assert any("127.0.0.1:9" in e for e in rep["errors"])  # unreachable contact / candidate
    assert any(srv_a.url in e and "HTTP 404" in e for e in rep["errors"])  # no pex endpoint


def _store(anns: list[dict[str, object]]) -> MemoryPexStore:
    store = MemoryPexStore()
    for i, ann in enumerate(reversed(anns)):
        store.add(str(i), ann)
    return store


def test_start_lookup_skipped_with_enough_peers_and_exhaustion() -> None:
    finder = PexFinder("0" * 64, want_peers=2)

    async def go() -> list[SourceSpec]:
        async with httpx.AsyncClient() as client:
            return await finder.find(SourceNeed("start", 0, ("http://a:1", "http://b:1")), client)

    assert asyncio.run(go()) == [] and finder.rounds == 0 and not finder.exhausted


def test_swarm_auth_signs_peers_not_mirrors() -> None:
    ident = PeerIdentity.generate()
    auth = SwarmAuth(ident, unsigned=["http://mirror.example/pub/"])
    assert auth.peer_id == ident.peer_id

    def signed(url: str) -> str | None:
        req = httpx.Request("GET", url, headers={"Range": "bytes=0-9"})
        return next(auth.auth_flow(req)).headers.get("webseed-peer")

    assert signed("http://mirror.example/pub/a.iso") is None
    value = signed("http://peer.example:8470/a.iso")
    assert value is not None and value.startswith(f"id={ident.peer_id}, ")
    assert signed("http://mirror.example/public/a.iso") is not None  # other base: a peer
