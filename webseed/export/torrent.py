"""BitTorrent v2 (BEP 52) ``.torrent`` files from manifests, with web seeds (BEP 19).

The manifest's chunk digests are the v2 piece layer and its ``pieces_root`` the
file's merkle root, so export is a translation: nothing is hashed again. The
torrent is v2-only (a hybrid would need SHA-1 piece hashes, i.e. a second
hashing pass). There is no tracker: peers come from the web seeds and DHT.
"""

from __future__ import annotations

from collections.abc import Sequence

from webseed import __version__
from webseed.export.bencode import bencode
from webseed.manifest import Manifest

MEDIA_TYPE = "application/x-bittorrent"


def web_seed_url(base: str, path: str) -> str:
    """BEP 19 web-seed URL: the artifact's directory, ending in ``/``.

    BEP 19 appends the torrent's name to a URL ending in ``/``, and libtorrent
    treats every v2 torrent that way, so the directory form works for both.
    """
    directory = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    return f"{base.rstrip('/')}/{directory}"


def torrent_dict(manifest: Manifest, web_seeds: Sequence[str] = ()) -> dict[str, object]:
    """The torrent as a dict (before bencoding); ``web_seeds`` are repository base URLs."""
    name = manifest.path.rsplit("/", 1)[-1]
    node: dict[str, object] = {"length": manifest.size}
    if manifest.size:
        node["pieces root"] = bytes.fromhex(manifest.pieces_root)
    info = {
        "name": name,
        "meta version": 2,
        "piece length": manifest.chunk_size,
        "file tree": {name: {"": node}},
    }
    torrent: dict[str, object] = {"info": info, "created by": f"webseed {__version__}"}
    if manifest.size > manifest.chunk_size:
        torrent["piece layers"] = {
            bytes.fromhex(manifest.pieces_root): b"".join(bytes.fromhex(c) for c in manifest.chunks)
        }
    if web_seeds:
        torrent["url-list"] = [web_seed_url(b, manifest.path) for b in web_seeds]
    return torrent


def torrent_bytes(manifest: Manifest, web_seeds: Sequence[str] = ()) -> bytes:
    """The bencoded ``.torrent`` for ``manifest`` with ``web_seeds`` as BEP 19 URLs."""
    return bencode(torrent_dict(manifest, web_seeds))
