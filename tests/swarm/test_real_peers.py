"""`webseed get` from real `webseed serve` peers (one holding only half the chunks) + nginx."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.nginx import Nginx, nginx_binary
from tests.prereq import missing
from tests.swarm.servers import webseed_serve
from tests.swarm.test_get_cli import PATH, SIZE, published  # noqa: F401  (fixture)
from webseed.cli import app
from webseed.manifest import Manifest
from webseed.storage import PartialArtifact

runner = CliRunner()


def test_get_from_webseed_serve_peers_one_partial(published, tmp_path: Path) -> None:  # noqa: F811
    if nginx_binary() is None:
        missing("nginx not installed")
    repo, pub, data = published
    # The manifest as published, to build the half peer's store.
    digest = next((repo / ".well-known/webseed/manifests").glob("*.json")).stem
    manifest = Manifest.parse((repo / f".well-known/webseed/manifests/{digest}.json").read_bytes())
    assert manifest.path == PATH
    store = tmp_path / "store"
    store.mkdir()
    (store / f"{manifest.digest}.json").write_bytes(manifest.encode())
    with PartialArtifact(store / manifest.digest, manifest) as p:
        for i in range(0, manifest.chunk_count, 2):
            a, b = manifest.chunk_range(i)
            p.write_chunk(i, data[a:b])
        p.sync()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "got.iso"
    with (
        webseed_serve(repo, "--rate", "1M") as full1,
        webseed_serve(repo, "--rate", "1M") as full2,
        webseed_serve(empty, "--store", str(store)) as half,
        Nginx(repo, limit_rate="1m") as mirror,
    ):
        res = runner.invoke(
            app,
            [
                "get", PATH, "--root-key", str(pub), "-o", str(out), "--json",
                "--peer", full1.rstrip("/"), "--peer", half.rstrip("/"),
                "--peer", full2.rstrip("/"), "--mirror", mirror.url,
                "--state-dir", str(tmp_path / "state"), "--seed", "5",
            ],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert out.read_bytes() == data and report["size"] == SIZE
    by = {s["url"]: s for s in report["sources"]}
    # The half peer served chunks, and its bitfield kept us from asking for the others.
    assert by[half.rstrip("/")]["bytes"] > 0, json.dumps(by[half.rstrip("/")])
    assert by[half.rstrip("/")]["failures"] == 0 and by[half.rstrip("/")]["last_error"] is None
    assert report["banned"] == {}


def test_engine_uses_http2_over_tls_with_a_webseed_peer(published, tmp_path: Path) -> None:  # noqa: F811
    import asyncio
    import ssl

    from peer.engine import SourceSpec, default_client, download
    from tests.server.test_clients import _self_signed

    repo, _, data = published
    digest = next((repo / ".well-known/webseed/manifests").glob("*.json")).stem
    manifest = Manifest.parse((repo / f".well-known/webseed/manifests/{digest}.json").read_bytes())
    cert, key = _self_signed(tmp_path)
    with webseed_serve(repo, "--tls-cert", str(cert), "--tls-key", str(key)) as url:
        assert url.startswith("https://")

        async def main():
            ctx = ssl.create_default_context(cafile=str(cert))
            async with default_client(verify=ctx) as client:
                return await download(
                    manifest, [SourceSpec(url.rstrip("/"))], tmp_path / "h2.iso", client=client
                )

        report = asyncio.run(main())
    assert (tmp_path / "h2.iso").read_bytes() == data
    assert report.sources[0].http_version == "HTTP/2"
