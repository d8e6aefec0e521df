"""The asyncio download engine: httpx + the sans-I/O scheduler + the verified store.

report = await download(manifest, [SourceSpec("http://peer:8000"),
                                   SourceSpec("https://mirror.example/pub", "mirror")],
                        "out.iso")
"""

from peer.engine.driver import Engine, SwarmError, default_client, download
from peer.engine.report import DownloadReport, SourceReport
from peer.engine.sources import BITFIELD_PATH, SourceSpec

__all__ = [
    "BITFIELD_PATH",
    "DownloadReport",
    "Engine",
    "SourceReport",
    "SourceSpec",
    "SwarmError",
    "default_client",
    "download",
]
