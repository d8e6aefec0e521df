"""Plugs the incentive policy into the HTTP server's upload-slot queue.

The server (``webseed.server.capacity``) defines an ``UploadPolicy`` protocol:
``rank(requester) -> float`` (larger is served first when a request must wait
for a slot) and ``served(requester, nbytes)`` (bytes sent after a response).
A requester has ``peer`` (the peer id), ``host`` and ``path``. This module
satisfies that protocol structurally, without importing the server (``peer``
must not depend on the entry points).

**The server must put only a verified peer id in** ``requester.peer``:
verify the ``Webseed-Peer`` header with :class:`peer.incentives.auth.RequestVerifier`
first and pass ``""`` when it is missing or invalid; otherwise anyone could
claim a contributor's id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from .ledger import Ledger
from .priority import SlotPolicy
from .receipts import ReceiptBook, contribution
from .recognition import Recognition


class RequesterLike(Protocol):
    """What the adapter reads from the server's requester object."""

    @property
    def peer(self) -> str: ...

    @property
    def path(self) -> str: ...


class IncentiveUploadPolicy:
    """``UploadPolicy`` for the server: rank by contribution (PropShare), account uploads."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        book: ReceiptBook | None = None,
        recognition: Recognition | None = None,
        slots: SlotPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.book = book
        self.recognition = recognition
        self.slots = slots or SlotPolicy()
        self.clock = clock

    def rank(self, requester: RequesterLike) -> float:
        """Larger is served first: contributors by credit, some newcomers optimistically."""
        now = self.clock()
        credit = (
            contribution(self.ledger, self.book, requester.peer, now) if requester.peer else 0.0
        )
        return self.slots.score(requester.peer, credit, now)

    def served(self, requester: RequesterLike, nbytes: int) -> None:
        """Account ``nbytes`` uploaded to ``requester`` for ``requester.path``."""
        now = self.clock()
        artifact = requester.path or "/"
        if requester.peer:
            self.ledger.record_upload(requester.peer, artifact, nbytes, now)
            self.slots.note_grant(requester.peer, now)
        if self.recognition is not None:
            self.recognition.served(artifact, nbytes)
