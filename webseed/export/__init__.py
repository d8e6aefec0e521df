"""Translations of a manifest for other clients: BitTorrent v2 ``.torrent`` and Metalink 4."""

from webseed.export.metalink import metalink_xml
from webseed.export.torrent import torrent_bytes

__all__ = ["metalink_xml", "torrent_bytes"]
