"""Upload-side policies: which incoming requests a peer serves now.

A peer over its upload capacity answers HTTP 503 with ``Retry-After`` (the
design's HTTP-native choke). The policy decides admission; once admitted, the
bytes share the uplink max-min fairly in the network model. The incentives
work (contribution-weighted admission) plugs in behind :class:`UploadPolicy`.
"""

from __future__ import annotations

from typing import Protocol


class UploadPolicy(Protocol):
    """Admission control of one uploader (one instance per uploading host)."""

    def admit(self, client: str, now: float) -> float | None:
        """``None``: serve ``client`` now (the caller later calls :meth:`release`).
        A number: answer 503 with that ``Retry-After`` in seconds."""

    def release(self, client: str, now: float) -> None:
        """A served request ended (done, cancelled or failed)."""

    def served(self, client: str, nbytes: float, now: float) -> None:
        """``nbytes`` were uploaded to ``client`` (accounting for contribution-aware policies)."""


class FairShare:
    """Serve everyone at once; the uplink is shared max-min fairly between them."""

    def admit(self, client: str, now: float) -> float | None:
        return None

    def release(self, client: str, now: float) -> None:
        return None

    def served(self, client: str, nbytes: float, now: float) -> None:
        return None


class SlotLimit:
    """Serve at most ``slots`` requests at once; the rest get 503 + ``retry_after``.

    Few concurrent uploads mean each gets a useful rate and finishes a chunk
    soon, so the chunk can be re-shared sooner (BitTorrent's unchoke slots).
    """

    def __init__(self, slots: int = 4, retry_after: float = 1.0) -> None:
        self.slots = slots
        self.retry_after = retry_after
        self.active = 0

    def admit(self, client: str, now: float) -> float | None:
        if self.active >= self.slots:
            return self.retry_after
        self.active += 1
        return None

    def release(self, client: str, now: float) -> None:
        self.active = max(0, self.active - 1)

    def served(self, client: str, nbytes: float, now: float) -> None:
        return None
