"""Partial artifacts: only verified chunks are ever served; the rest get 416 + Webseed-Missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import WK, parse_multipart, rand
from webseed.manifest import build_manifest
from webseed.server.app import create_app
from webseed.server.standalone import running
from webseed.storage import PartialArtifact

CHUNK = 256 * 1024
SIZE = 5 * CHUNK + 1000  # 6 chunks
DATA = rand(SIZE, seed=7)


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, PartialArtifact, str]]:
    tmp = tmp_path_factory.mktemp("partial")
    src = tmp / "src.bin"
    src.write_bytes(DATA)
    manifest = build_manifest(src, "releases/part.bin", chunk_size=CHUNK)
    store = tmp / "store"
    store.mkdir()
    (store / f"{manifest.digest}.json").write_bytes(manifest.encode())
    with PartialArtifact(store / manifest.digest, manifest) as p:
        for i in (0, 2, 3):
            p.write_chunk(i, DATA[i * CHUNK : (i + 1) * CHUNK])
        p.sync()
    # Garbage in the store is ignored, not served.
    (store / ("ab" * 32 + ".json")).write_bytes(b"{not a manifest")
    (store / "README.json").write_text("{}")
    repo = tmp / "repo"
    repo.mkdir()
    app = create_app(repo, store=store)
    live = app.state.peer.repo.partials()[manifest.digest]
    with running(app) as url:
        yield url, live, manifest.digest
    app.state.peer.repo.close()


def test_verified_ranges_served(peer: tuple[str, PartialArtifact, str]) -> None:
    url, _, digest = peer
    r = httpx.get(f"{url}/releases/part.bin", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == DATA[:100]
    assert r.headers["etag"] == f'"{digest}"'
    assert r.headers["webseed-manifest"] == digest
    r = httpx.get(
        f"{url}/releases/part.bin",
        headers={"Range": f"bytes={2 * CHUNK}-{4 * CHUNK - 1},10-19"},
    )
    assert r.status_code == 206
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert [p[1] for p in parts] == [DATA[10:20], DATA[2 * CHUNK : 4 * CHUNK]]


@pytest.mark.parametrize(
    ("range_header", "missing"),
    [
        (f"bytes={CHUNK}-{CHUNK}", "1"),  # one byte of an unverified chunk
        (f"bytes={CHUNK - 1}-{CHUNK}", "1"),  # straddles verified 0 and missing 1
        ("bytes=0-9,-10", "5"),  # the last chunk
        (None, "1,4,5"),  # the whole file
    ],
)
def test_unverified_bytes_never_served(
    peer: tuple[str, PartialArtifact, str], range_header: str | None, missing: str
) -> None:
    url, _, _ = peer
    headers = {"Range": range_header} if range_header else {}
    for method in ("GET", "HEAD"):
        r = httpx.request(method, f"{url}/releases/part.bin", headers=headers)
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{SIZE}"
        assert r.headers["webseed-missing"] == missing
        assert DATA[CHUNK : CHUNK + 16] not in r.content


def test_bitfield_and_chunks(peer: tuple[str, PartialArtifact, str]) -> None:
    url, live, digest = peer
    r = httpx.get(f"{url}/{WK}/bitfield/{digest}")
    assert r.status_code == 200 and r.headers["webseed-chunks"] == "6"
    assert r.content == bytes([0b10110000])
    m = httpx.get(f"{url}/{WK}/manifests/{digest}.json")
    assert m.status_code == 200 and m.content == live.manifest.encode()
    have = httpx.get(f"{url}/{WK}/chunks/{live.manifest.chunks[2]}")
    assert have.status_code == 200 and have.content == DATA[2 * CHUNK : 3 * CHUNK]
    assert httpx.get(f"{url}/{WK}/chunks/{live.manifest.chunks[1]}").status_code == 404


def test_chunk_verified_in_process_is_served_at_once(
    peer: tuple[str, PartialArtifact, str],
) -> None:
    url, live, digest = peer
    assert httpx.get(f"{url}/{WK}/chunks/{live.manifest.chunks[4]}").status_code == 404
    live.write_chunk(4, DATA[4 * CHUNK : 5 * CHUNK])
    assert (
        httpx.get(f"{url}/{WK}/chunks/{live.manifest.chunks[4]}").content
        == DATA[4 * CHUNK : 5 * CHUNK]
    )
    r = httpx.get(
        f"{url}/releases/part.bin", headers={"Range": f"bytes={4 * CHUNK}-{4 * CHUNK + 9}"}
    )
    assert r.status_code == 206 and r.content == DATA[4 * CHUNK : 4 * CHUNK + 10]
    assert httpx.get(f"{url}/{WK}/bitfield/{digest}").content == bytes([0b10111000])


def test_complete_file_changed_behind_the_index_is_not_served_by_chunk_digest(
    tmp_path: Path,
) -> None:
    from tests.server.helpers import publish

    data = rand(3 * CHUNK, seed=3)
    manifest = publish(tmp_path, "a.bin", data, chunk_size=CHUNK)
    app = create_app(tmp_path)
    with running(app) as url:
        c1 = manifest.chunks[1]
        assert httpx.get(f"{url}/{WK}/chunks/{c1}").content == data[CHUNK : 2 * CHUNK]
        # Replace the file in place (same size): chunk 2 no longer matches its digest.
        changed = bytearray(data)
        changed[2 * CHUNK + 5] ^= 0xFF
        (tmp_path / "a.bin").write_bytes(bytes(changed))
        assert httpx.get(f"{url}/{WK}/chunks/{manifest.chunks[2]}").status_code == 404
        # ... and its ETag falls back to the file validator (modified after its manifest).
        assert httpx.head(f"{url}/a.bin").headers["etag"].startswith('"f-')
