"""What a download did: bytes per source, bans, time, throughput."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceReport:
    """One source's part in a download."""

    url: str
    kind: str
    bytes: int = 0  # verified bytes this source contributed
    received: int = 0  # body bytes received from it (duplicates and corrupt ones included)
    chunks: int = 0
    requests: int = 0
    failures: int = 0
    rate: float | None = None
    latency: float | None = None
    banned: str | None = None
    last_error: str | None = None
    http_version: str | None = None  # as negotiated, e.g. "HTTP/2" over TLS with ALPN

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "url": self.url,
            "kind": self.kind,
            "bytes": self.bytes,
            "received": self.received,
            "chunks": self.chunks,
            "requests": self.requests,
            "failures": self.failures,
            "rate_bytes_per_s": self.rate,
            "latency_s": self.latency,
            "banned": self.banned,
            "last_error": self.last_error,
            "http_version": self.http_version,
        }


@dataclass
class DownloadReport:
    """The outcome of one download (also written as ``webseed get --json``)."""

    path: str
    size: int
    output: str
    elapsed: float = 0.0
    resumed_chunks: int = 0
    fetched_bytes: int = 0
    corrupt_chunks: int = 0
    sources: list[SourceReport] = field(default_factory=list)
    #: Seconds spent per phase (``index``, ``transfer``, ``finalize`` ...).
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Bytes fetched in this run per second of it."""
        return self.fetched_bytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def banned(self) -> dict[str, str]:
        """Banned sources and why."""
        return {s.url: s.banned for s in self.sources if s.banned}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "path": self.path,
            "size": self.size,
            "output": self.output,
            "elapsed_s": round(self.elapsed, 6),
            "throughput_bytes_per_s": round(self.throughput, 1),
            "fetched_bytes": self.fetched_bytes,
            "resumed_chunks": self.resumed_chunks,
            "corrupt_chunks": self.corrupt_chunks,
            "banned": self.banned,
            "sources": [s.to_dict() for s in self.sources],
            "phases_s": {k: round(v, 6) for k, v in self.phases.items()},
        }
