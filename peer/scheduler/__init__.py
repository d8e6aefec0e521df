"""Sans-I/O swarm scheduler: events in, actions out, no clock and no I/O.

    sched = Scheduler(size=manifest.size, chunk_size=manifest.chunk_size, seed=1)
    actions = sched.handle(SourceAdded("http://a/", kind="mirror"), now=0.0)
    # -> [Request(id=1, source="http://a/", first=.., last=.., start=.., end=..)]
    # ... drive the requests, report BytesReceived / ChunkVerified / RequestDone ...
    actions = sched.handle(Tick(), now=0.5)

See ``docs/scheduler.md`` for the model, the events and the actions.
"""

from peer.scheduler.actions import (
    Action,
    Ban,
    Cancel,
    FallBackToMirrors,
    Finished,
    NeedMoreSources,
    Request,
)
from peer.scheduler.config import SchedulerConfig
from peer.scheduler.core import Scheduler, SourceStats
from peer.scheduler.events import (
    BytesReceived,
    ChunkCorrupt,
    ChunkVerified,
    Event,
    FailureKind,
    Have,
    HaveBitfield,
    Lacks,
    RequestDone,
    RequestFailed,
    RequestStarted,
    SourceAdded,
    SourceKind,
    SourceRemoved,
    Tick,
)

__all__ = [
    "Action",
    "Ban",
    "BytesReceived",
    "Cancel",
    "ChunkCorrupt",
    "ChunkVerified",
    "Event",
    "FailureKind",
    "FallBackToMirrors",
    "Finished",
    "Have",
    "HaveBitfield",
    "Lacks",
    "NeedMoreSources",
    "Request",
    "RequestDone",
    "RequestFailed",
    "RequestStarted",
    "Scheduler",
    "SchedulerConfig",
    "SourceAdded",
    "SourceKind",
    "SourceRemoved",
    "SourceStats",
    "Tick",
]
