"""Seeding incentives without a tracker.

Each peer has an Ed25519 identity (:mod:`.identity`), authenticates its requests
(:mod:`.auth`), keeps a local, decaying ledger of what it exchanged with whom
(:mod:`.ledger`), collects signed receipts as portable evidence of what it
uploaded (:mod:`.receipts`), gives upload slots first to contributors
(:mod:`.priority`, :mod:`.adapter`), recognises persistent seeders
(:mod:`.recognition`) and keeps seeding after completion (:mod:`.policy`).
:mod:`.behaviour` is the user-behaviour model the simulator runs.
"""

from __future__ import annotations

import logging

#: Every rejection (bad header, forged/replayed receipt, ...) is logged here.
log = logging.getLogger("peer.incentives")
