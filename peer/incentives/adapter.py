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

#: Bytes (decayed) an identity may take before, having given nothing, it counts as a debtor.
BOOTSTRAP_ALLOWANCE = 64 * 1024 * 1024


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
        bootstrap_allowance: int = BOOTSTRAP_ALLOWANCE,
    ) -> None:
        self.ledger = ledger
        self.bootstrap_allowance = bootstrap_allowance
        self.book = book
        self.recognition = recognition
        self.slots = slots or SlotPolicy()
        self.clock = clock

    def rank(self, requester: RequesterLike) -> float:
        """Larger is served first: contributors by credit, some newcomers optimistically."""
        now = self.clock()
        peer = requester.peer
        credit = contribution(self.ledger, self.book, peer, now) if peer else 0.0
        if peer and credit <= 0 and self.ledger.totals(peer, now).up > self.bootstrap_allowance:
            credit = -1.0  # a debtor: had its start, gave nothing back; spare capacity only
        return self.slots.score(peer, credit, now)

    def served(self, requester: RequesterLike, nbytes: int) -> None:
        """Account ``nbytes`` uploaded to ``requester`` for ``requester.path``."""
        now = self.clock()
        artifact = requester.path or "/"
        if requester.peer:
            self.ledger.record_upload(requester.peer, artifact, nbytes, now)
            self.slots.note_grant(requester.peer, now)
        if self.recognition is not None:
            self.recognition.served(artifact, nbytes)
