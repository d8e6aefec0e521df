"""With a repository published by webseed.index: the signed index verifies through the peer,
and the peer's validators are the manifest digests the index signs."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server.helpers import WK, rand
from webseed.index.client import open_index
from webseed.index.keys import RoleKeys
from webseed.index.publisher import Publisher
from webseed.integrity.keys import generate_keypair, load_private_key, load_public_key
from webseed.server.app import create_app
from webseed.server.standalone import running


def test_published_repository_through_the_peer(tmp_path: Path) -> None:
    keys = generate_keypair(tmp_path / "keys")
    src = tmp_path / "src"
    (src / "releases").mkdir(parents=True)
    data = rand(700_000, seed=9)
    (src / "releases" / "tool-1.0.tar.gz").write_bytes(data)
    repo = tmp_path / "repo"
    repo.mkdir()
    Publisher(repo, RoleKeys.single(load_private_key(str(keys.private)))).publish(src)
    with running(create_app(repo)) as url:
        index = open_index(url, load_public_key(keys.public), state_dir=tmp_path / "state")
        entry = index.lookup("releases/tool-1.0.tar.gz")
        r = httpx.get(f"{url}/releases/tool-1.0.tar.gz", headers={"Range": "bytes=0-99"})
        assert r.status_code == 206 and r.content == data[:100]
        assert r.headers["etag"] == f'"{entry.manifest_digest}"'
        m = httpx.get(f"{url}/{WK}/manifests/{entry.manifest_digest}.json")
        assert m.status_code == 200
        bits = httpx.get(f"{url}/{WK}/bitfield/{entry.manifest_digest}")
        assert bits.status_code == 200 and set(bits.content[:-1]) <= {0xFF}
        # The publisher's private cache is not metadata and is not served.
        assert httpx.get(f"{url}/{WK}/publish-cache.json").status_code == 404
