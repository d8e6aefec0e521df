"""Sources as the engine sees them: a base URL and a kind."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from peer.scheduler import SourceKind

#: Where a peer publishes which chunks of a manifest it holds (binary bitfield, MSB first).
BITFIELD_PATH = ".well-known/webseed/bitfield/"


@dataclass(frozen=True)
class SourceSpec:
    """A source: ``url`` is the base under which the repository tree is served.

    A ``"mirror"`` serves every artifact whole; a ``"peer"`` may hold only some
    chunks and may publish a bitfield (without one it is treated as complete,
    and a range it lacks answered 404/416 is "does not have", not a failure).
    """

    url: str
    kind: SourceKind = "peer"

    @property
    def base(self) -> str:
        """The URL without a trailing slash."""
        return self.url.rstrip("/")

    def artifact_url(self, repo_path: str) -> str:
        """``<base>/<repo path>``, each path segment percent-encoded."""
        return f"{self.base}/{quote(repo_path, safe='/')}"

    def bitfield_url(self, manifest_digest: str) -> str:
        """``<base>/.well-known/webseed/bitfield/<manifest digest>``."""
        return f"{self.base}/{BITFIELD_PATH}{manifest_digest}"
