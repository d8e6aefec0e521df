"""Events fed to the :class:`~peer.scheduler.Scheduler`: what the driver saw happen.

Every event is a small frozen dataclass. The driver (the asyncio engine or the
simulator) passes each one to :meth:`Scheduler.handle` together with the
current time; events themselves carry no clock. Requests are named by the
integer ``request`` id the scheduler gave them in its :class:`Request` action.
Events about a request the scheduler no longer knows (it was cancelled, or its
source was banned) are ignored, so a driver never has to race its own cancels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: A peer may hold any subset of chunks; a mirror holds every chunk.
SourceKind = Literal["peer", "mirror"]


@dataclass(frozen=True)
class SourceAdded:
    """A source to download from. ``source`` is an opaque id (the engine uses its base URL).

    A ``"mirror"`` holds every chunk. A ``"peer"`` is assumed to hold every
    chunk too (``complete=True``) until a :class:`HaveBitfield` says otherwise;
    pass ``complete=False`` for a peer known to be partial whose bitfield is
    still to come (it gets no requests until then).
    """

    source: str
    kind: SourceKind = "peer"
    complete: bool = True


@dataclass(frozen=True)
class SourceRemoved:
    """The source is gone; its requests are dropped and their chunks re-queued."""

    source: str


@dataclass(frozen=True)
class HaveBitfield:
    """Which chunks ``source`` holds: a bitfield, most significant bit first (BitTorrent's)."""

    source: str
    bitfield: bytes


@dataclass(frozen=True)
class Have:
    """``source`` now holds chunk ``chunk``."""

    source: str
    chunk: int


@dataclass(frozen=True)
class Lacks:
    """``source`` said it does not hold ``chunk`` (HTTP 404/416 for its range): not a failure."""

    source: str
    chunk: int


@dataclass(frozen=True)
class RequestStarted:
    """The response to ``request`` began (status line and headers): a latency sample."""

    request: int


@dataclass(frozen=True)
class BytesReceived:
    """``n`` more body bytes of ``request`` arrived, in order from its start offset."""

    request: int
    n: int


@dataclass(frozen=True)
class ChunkVerified:
    """Chunk ``chunk`` matched its digest and is stored; ``sources`` sent its bytes."""

    chunk: int
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChunkCorrupt:
    """Chunk ``chunk`` did not match its digest; ``sources`` sent its bytes (they get banned)."""

    chunk: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class RequestDone:
    """The response body of ``request`` ended. Chunks it should have carried but that were
    not verified go back to the queue (a short body counts as a failure of its source)."""

    request: int


FailureKind = Literal["error", "missing", "gone", "busy"]


@dataclass(frozen=True)
class RequestFailed:
    """``request`` failed before its body ended.

    ``kind``: ``"error"`` (connection refused or reset, 5xx, bad headers: the
    source backs off, doubling each time), ``"missing"`` (404/416: the source
    lacks some chunk in that range: a multi-chunk range is retried in halves until
    the chunk is known, then it is marked as with :class:`Lacks`; no back-off),
    ``"gone"`` (404/410: the source does not hold the artifact at all) or
    ``"busy"`` (503 choke: back off for ``retry_after`` seconds, no penalty).
    """

    request: int
    kind: FailureKind = "error"
    reason: str = ""
    retry_after: float | None = None


@dataclass(frozen=True)
class Tick:
    """Time advanced: time-outs, back-off expiries and periodic decisions happen now."""


Event = (
    SourceAdded
    | SourceRemoved
    | HaveBitfield
    | Have
    | Lacks
    | RequestStarted
    | BytesReceived
    | ChunkVerified
    | ChunkCorrupt
    | RequestDone
    | RequestFailed
    | Tick
)
