"""The asyncio engine against real HTTP servers on 127.0.0.1 (Hypercorn and nginx)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from peer.engine import Engine, SourceSpec, SwarmError, download
from peer.engine.fetch import check_content_range, retry_after
from peer.scheduler import SchedulerConfig
from tests.nginx import Nginx, nginx_binary
from tests.prereq import missing
from tests.swarm.conftest import CHUNK, Artifact
from tests.swarm.servers import source
from webseed.storage import PartialArtifact

FAST = SchedulerConfig(stall_timeout=0.6, stall_latencies=4, base_backoff=0.1, max_backoff=1.0)


def run(coro):
    return asyncio.run(coro)


def test_three_peers_and_nginx_mirror(artifact: Artifact, out_dir: Path) -> None:
    if nginx_binary() is None:
        missing("nginx not installed")
    m = artifact.manifest
    s1, _ = source(artifact.root, rate=2e6)
    s2, _ = source(artifact.root, rate=2e6)
    s3, _ = source(artifact.root, rate=2e6)
    with s1, s2, s3, Nginx(artifact.root, limit_rate="4m") as mirror:
        specs = [SourceSpec(s.url) for s in (s1, s2, s3)] + [SourceSpec(mirror.url, "mirror")]
        dest = out_dir / "demo.bin"
        report = run(download(m, specs, dest, seed=1, config=FAST))
    assert dest.read_bytes() == artifact.data
    assert not Path(f"{dest}.part").exists() and not Path(f"{dest}.part.journal").exists()
    by_url = {s.url: s for s in report.sources}
    assert sum(s.bytes for s in report.sources) == m.size
    # The unthrottled nginx mirror carries the most, but every source helped.
    assert by_url[mirror.url].bytes > 0
    assert sum(1 for s in report.sources if s.bytes > 0) >= 2
    assert report.banned == {} and report.resumed_chunks == 0
    # Coalesced ranges: far fewer requests than chunks.
    assert sum(s.requests for s in report.sources) < m.chunk_count
    d = report.to_dict()
    assert d["throughput_bytes_per_s"] > 0 and len(d["sources"]) == 4


def test_corrupt_peer_is_banned_file_still_correct(artifact: Artifact, out_dir: Path) -> None:
    good, _ = source(artifact.root, rate=4e6)
    bad, _ = source(artifact.root, corrupt_all=True, chunk_size=CHUNK)
    with good, bad:
        specs = [SourceSpec(good.url), SourceSpec(bad.url)]
        report = run(download(artifact.manifest, specs, out_dir / "x", seed=2, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    assert list(report.banned) == [bad.url] and "corrupt" in report.banned[bad.url]
    assert report.corrupt_chunks >= 1
    assert {s.url: s.bytes for s in report.sources}[bad.url] == 0


def test_some_corrupt_chunks_keep_the_good_ones(artifact: Artifact, out_dir: Path) -> None:
    # The bad peer sends good chunks first, then one bad one: the good ones it sent stay.
    bad, _ = source(artifact.root, corrupt_chunks={20}, chunk_size=CHUNK)
    good, _ = source(artifact.root, rate=3e6)
    with bad, good:
        specs = [SourceSpec(bad.url), SourceSpec(good.url)]
        report = run(download(artifact.manifest, specs, out_dir / "x", seed=3, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    bad_rep = {s.url: s for s in report.sources}[bad.url]
    if bad_rep.banned:
        assert "chunk 20" in bad_rep.banned
    assert bad_rep.bytes > 0


def test_peer_dies_mid_transfer(artifact: Artifact, out_dir: Path) -> None:
    dying, _ = source(artifact.root, die_after=1_500_000)
    ok, _ = source(artifact.root, rate=3e6)
    with dying, ok:
        specs = [SourceSpec(dying.url), SourceSpec(ok.url)]
        report = run(download(artifact.manifest, specs, out_dir / "x", seed=4, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    rep = {s.url: s for s in report.sources}
    assert rep[dying.url].failures >= 1 or rep[dying.url].bytes < artifact.manifest.size
    assert not rep[dying.url].banned


def test_stalling_peer_is_timed_out(artifact: Artifact, out_dir: Path) -> None:
    stall, _ = source(artifact.root, stall_after=CHUNK + 1000)
    ok, _ = source(artifact.root, rate=3e6)
    with stall, ok:
        specs = [SourceSpec(stall.url), SourceSpec(ok.url)]
        report = run(download(artifact.manifest, specs, out_dir / "x", seed=5, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    rep = {s.url: s for s in report.sources}
    assert rep[stall.url].bytes <= CHUNK and rep[ok.url].bytes >= artifact.manifest.size - CHUNK


@pytest.mark.parametrize("with_bitfield", [True, False])
def test_peer_with_half_the_chunks(artifact: Artifact, out_dir: Path, with_bitfield: bool) -> None:
    m = artifact.manifest
    half = set(range(0, m.chunk_count, 2))
    partial, pb = source(
        artifact.root, holds=half, bitfield=with_bitfield, chunk_size=CHUNK, digest=m.digest
    )
    full, _ = source(artifact.root, rate=1.5e6)
    with partial, full:
        specs = [SourceSpec(partial.url), SourceSpec(full.url)]
        report = run(download(m, specs, out_dir / "x", seed=6, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    rep = {s.url: s for s in report.sources}
    assert rep[partial.url].bytes > 0 and not rep[partial.url].banned
    if with_bitfield:
        # It never asked the partial peer for a chunk it does not hold.
        assert not any(" bytes=" in r and "416" in r for r in pb.requests)
        assert rep[partial.url].failures == 0


def test_fallback_mirror_used_when_peers_cannot_finish(artifact: Artifact, out_dir: Path) -> None:
    m = artifact.manifest
    partial, _ = source(artifact.root, holds={0, 1, 2}, chunk_size=CHUNK, digest=m.digest)
    mirror, _ = source(artifact.root)
    with partial, mirror:
        report = run(
            download(
                m,
                [SourceSpec(partial.url)],
                out_dir / "x",
                fallback=[SourceSpec(mirror.url, "mirror")],
                seed=7,
                config=FAST,
            )
        )
    assert (out_dir / "x").read_bytes() == artifact.data
    assert {s.url for s in report.sources} == {partial.url, mirror.url}


def test_all_sources_corrupt_fails_cleanly(artifact: Artifact, out_dir: Path) -> None:
    bad, _ = source(artifact.root, corrupt_all=True, chunk_size=CHUNK)
    with bad, pytest.raises(SwarmError, match="banned"):
        run(download(artifact.manifest, [SourceSpec(bad.url)], out_dir / "x", config=FAST))
    assert not (out_dir / "x").exists()


def test_unreachable_source_gives_up(artifact: Artifact, out_dir: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connection refused
    with pytest.raises(SwarmError, match="no progress"):
        run(
            download(
                artifact.manifest,
                [SourceSpec(f"http://127.0.0.1:{port}", "mirror")],
                out_dir / "x",
                config=FAST,
                give_up_after=1.0,
            )
        )


def test_resume_fetches_only_missing_chunks(artifact: Artifact, out_dir: Path) -> None:
    m = artifact.manifest
    dest = out_dir / "x"
    part = Path(f"{dest}.part")
    with PartialArtifact(part, m) as store:
        for c in range(0, m.chunk_count, 3):
            a, b = m.chunk_range(c)
            store.write_chunk(c, artifact.data[a:b])
        store.sync()
        held = store.verified_count
    srv, _ = source(artifact.root)
    with srv:
        report = run(download(m, [SourceSpec(srv.url, "mirror")], dest, config=FAST))
    assert dest.read_bytes() == artifact.data
    assert report.resumed_chunks == held
    assert report.fetched_bytes <= m.size - (held - 1) * CHUNK


def test_already_complete_just_finalizes(artifact: Artifact, out_dir: Path) -> None:
    m = artifact.manifest
    dest = out_dir / "x"
    with PartialArtifact(Path(f"{dest}.part"), m) as store:
        for c in range(m.chunk_count):
            a, b = m.chunk_range(c)
            store.write_chunk(c, artifact.data[a:b])
    report = run(download(m, [], dest))
    assert dest.read_bytes() == artifact.data and report.fetched_bytes == 0


def test_busy_source_answers_503(artifact: Artifact, out_dir: Path) -> None:
    from tests.swarm.servers import Server

    calls = {"n": 0}
    inner, _ = source(artifact.root)

    async def choking(scope, receive, send):
        if scope["type"] == "http" and not scope["path"].startswith("/.well-known"):
            calls["n"] += 1
            if calls["n"] <= 2:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [(b"retry-after", b"0.2"), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        await inner.app(scope, receive, send)

    with Server(choking) as srv:
        report = run(download(artifact.manifest, [SourceSpec(srv.url)], out_dir / "x", config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    assert report.sources[0].failures == 0 and calls["n"] > 2


def test_engine_rejects_mismatched_content_range() -> None:
    assert check_content_range("bytes 0-9/100", 0, 10, 100) is None
    assert check_content_range("bytes 0-9/*", 0, 10, 100) is None
    assert "not the range" in (check_content_range("bytes 0-8/100", 0, 10, 100) or "")
    assert "not 100 bytes" in (check_content_range("bytes 0-9/99", 0, 10, 100) or "")
    assert "bad" in (check_content_range(None, 0, 10, 100) or "")
    assert retry_after("3") == 3.0 and retry_after("soon") is None and retry_after(None) is None


def test_progress_callback_and_source_urls(artifact: Artifact, out_dir: Path) -> None:
    seen: list[tuple[int, int, int]] = []
    srv, _ = source(artifact.root)
    spec = SourceSpec(srv.url + "/", "mirror")
    assert spec.artifact_url("a b/c.iso") == f"{srv.url}/a%20b/c.iso"
    with srv:
        engine = Engine(
            artifact.manifest,
            [spec, spec],
            out_dir / "x.part",
            on_progress=lambda *a: seen.append(a),
        )
        run(engine.run(out_dir / "x"))
    assert seen[-1][0] == artifact.manifest.chunk_count
    assert seen[-1][2] == artifact.manifest.size


def test_python_http_server_without_range_support(
    artifact: Artifact,
    out_dir: Path,
    static_server,
) -> None:
    # python -m http.server answers every range with 200 and the whole file: the engine
    # keeps each chunk of that one stream instead of discarding up to the range.
    url = static_server(artifact.root)
    report = run(download(artifact.manifest, [SourceSpec(url, "mirror")], out_dir / "x", seed=8))
    assert (out_dir / "x").read_bytes() == artifact.data
    (src,) = report.sources
    assert src.bytes == artifact.manifest.size
    assert src.received <= artifact.manifest.size


def test_no_range_mirror_next_to_a_ranged_peer(
    artifact: Artifact,
    out_dir: Path,
    static_server,
) -> None:
    url = static_server(artifact.root)
    peer, _ = source(artifact.root, rate=3e6)
    with peer:
        specs = [SourceSpec(peer.url), SourceSpec(url, "mirror")]
        report = run(download(artifact.manifest, specs, out_dir / "x", seed=9, config=FAST))
    assert (out_dir / "x").read_bytes() == artifact.data
    assert sum(s.bytes for s in report.sources) == artifact.manifest.size


def test_large_chunks_are_verified_in_a_thread(tmp_path: Path, out_dir: Path) -> None:
    from tests.swarm.conftest import make_artifact

    root = tmp_path / "big"
    root.mkdir()
    art = make_artifact(root, 5 * 2 * 1024 * 1024 + 7, seed=4, chunk_size=2 * 1024 * 1024)
    good, _ = source(root)
    bad, _ = source(root, corrupt_chunks={1}, chunk_size=2 * 1024 * 1024)
    with good, bad:
        specs = [SourceSpec(bad.url), SourceSpec(good.url)]
        report = run(download(art.manifest, specs, out_dir / "big", seed=1, config=FAST))
    assert (out_dir / "big").read_bytes() == art.data
    assert sum(s.bytes for s in report.sources) == art.manifest.size
