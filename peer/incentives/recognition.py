"""Recognition of persistent seeders: time and bytes served, levels, badges, signed summaries.

A peer counts, per artifact and overall, how long it has seeded and how many
bytes it served (and downloaded, for ratios). From those it earns a *level*
and *badges*, shown by ``webseed stats`` and the stats endpoint. It can publish
a **contribution summary** signed with its identity (domain
``webseed-summary-v1``). The signature proves *who* makes the claim; the
counters themselves are self-reported. The summary therefore carries the
receipts it holds: those are signed by the downloaders, so a verifier learns a
receipt-backed lower bound (``receipted_bytes``) that the seeder could not
inflate without other keys (Sybil limits as in :mod:`.receipts`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webseed.errors import SignatureError

from . import log
from .errors import ReceiptError
from .identity import PeerIdentity, b64d, b64e, is_peer_id, verify
from .receipts import Receipt
from .store import read_json, write_json

DOMAIN = "webseed-summary-v1"
GIB = 1 << 30
TIB = 1 << 40
DAY = 86400.0
MAX_SUMMARY = 256 * 1024

#: (name, bytes served at least, seconds seeded at least), highest first.
LEVELS: list[tuple[str, int, float]] = [
    ("pillar", TIB, 30 * DAY),
    ("keeper", 50 * GIB, 7 * DAY),
    ("seeder", GIB, DAY),
    ("newcomer", 0, 0.0),
]


@dataclass
class Counters:
    """Seeding seconds, bytes served and bytes downloaded for one artifact (or all)."""

    seconds: float = 0.0
    served: int = 0
    downloaded: int = 0

    @property
    def ratio(self) -> float | None:
        """Served / downloaded, None before anything was downloaded."""
        return self.served / self.downloaded if self.downloaded else None


def level_of(total: Counters) -> str:
    """The highest level whose byte and time thresholds are both met."""
    for name, nbytes, seconds in LEVELS:
        if total.served >= nbytes and total.seconds >= seconds:
            return name
    return "newcomer"  # pragma: no cover - the last level has zero thresholds


def badges_of(per: dict[str, Counters], total: Counters) -> list[str]:
    """Badges earned (sorted)."""
    out = set()
    if total.served > 0:
        out.add("first-upload")
    if any(c.ratio is not None and c.ratio >= 1.0 for c in per.values()):
        out.add("ratio-1")
    if any(c.ratio is not None and c.ratio >= 2.0 for c in per.values()):
        out.add("ratio-2")
    if any(c.seconds >= 7 * DAY for c in per.values()):
        out.add("week-seeder")
    if any(c.seconds >= 30 * DAY for c in per.values()):
        out.add("month-seeder")
    if total.served >= TIB:
        out.add("terabyte")
    if sum(1 for c in per.values() if c.served > 0) >= 10:
        out.add("long-tail")
    return sorted(out)


class Recognition:
    """Seeding counters per artifact, persisted atomically to ``path`` when given."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.per: dict[str, Counters] = {}
        data = read_json(path) if path is not None else None
        if isinstance(data, dict):
            for name, row in data.get("artifacts", {}).items():
                try:
                    c = Counters(float(row["seconds"]), int(row["served"]), int(row["downloaded"]))
                except (KeyError, TypeError, ValueError):
                    log.warning("recognition: skipped malformed row for %r", name)
                    continue
                if c.seconds >= 0 and c.served >= 0 and c.downloaded >= 0:
                    self.per[str(name)] = c

    def _c(self, artifact: str) -> Counters:
        return self.per.setdefault(artifact, Counters())

    def seeded(self, artifact: str, seconds: float) -> None:
        """``artifact`` was complete and offered for ``seconds``."""
        if seconds < 0:
            raise ValueError("negative duration")
        self._c(artifact).seconds += seconds

    def served(self, artifact: str, nbytes: int) -> None:
        """``nbytes`` of ``artifact`` were uploaded to someone."""
        if nbytes < 0:
            raise ValueError("negative byte count")
        self._c(artifact).served += nbytes

    def downloaded(self, artifact: str, nbytes: int) -> None:
        """``nbytes`` of ``artifact`` were downloaded by us."""
        if nbytes < 0:
            raise ValueError("negative byte count")
        self._c(artifact).downloaded += nbytes

    def total(self) -> Counters:
        """Counters summed over artifacts (seconds: the sum of per-artifact seeding time)."""
        return Counters(
            sum(c.seconds for c in self.per.values()),
            sum(c.served for c in self.per.values()),
            sum(c.downloaded for c in self.per.values()),
        )

    def summary(self) -> dict[str, Any]:
        """Per artifact and overall counters, level and badges (JSON-ready)."""
        total = self.total()
        return {
            "artifacts": {
                a: {"seconds": c.seconds, "served": c.served, "downloaded": c.downloaded}
                for a, c in sorted(self.per.items())
            },
            "total": {
                "seconds": total.seconds,
                "served": total.served,
                "downloaded": total.downloaded,
            },
            "level": level_of(total),
            "badges": badges_of(self.per, total),
        }

    def save(self) -> None:
        """Persist (no-op without a path)."""
        if self.path is not None:
            write_json(self.path, {"artifacts": self.summary()["artifacts"]})


def sign_summary(
    identity: PeerIdentity,
    recognition: Recognition,
    now: float,
    receipts: Iterable[Receipt] = (),
) -> bytes:
    """A publishable, signed contribution summary with the receipts that back it."""
    body = {
        "v": 1,
        "peer": identity.peer_id,
        "issued": int(now),
        "summary": recognition.summary(),
        "receipts": [r.to_dict() for r in receipts if r.uploader == identity.peer_id],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    sig = identity.sign(DOMAIN, raw)
    return json.dumps(
        {"body": body, "sig": b64e(sig)}, sort_keys=True, separators=(",", ":")
    ).encode()


def verify_summary(raw: bytes, now: float) -> dict[str, Any]:
    """Check a signed summary; return its body plus ``receipted_bytes`` (verified lower bound).

    :class:`SignatureError` if it is malformed or not signed by the peer it names.
    Receipts that are forged, expired, self-issued or for another peer are
    dropped (and logged); only the best receipt per (issuer, artifact) counts.
    """
    if len(raw) > MAX_SUMMARY:
        raise SignatureError("summary too large")
    try:
        outer = json.loads(raw)
        body = outer["body"]
        sig = b64d(outer["sig"])
        peer = body["peer"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise SignatureError("malformed contribution summary") from exc
    if not is_peer_id(peer) or not isinstance(body.get("receipts"), list):
        raise SignatureError("malformed contribution summary")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    verify(peer, DOMAIN, canonical, sig)
    best: dict[tuple[str, str], int] = {}
    for item in body["receipts"]:
        try:
            r = Receipt.from_dict(item)
            r.check_signature()
            if r.uploader != peer or r.issuer == peer or r.expires <= now:
                raise ReceiptError("receipt is self-issued, expired or for another peer")
        except ReceiptError as exc:
            log.warning("summary of %s…: dropped receipt: %s", peer[:12], exc)
            continue
        key = (r.issuer, r.artifact)
        best[key] = max(best.get(key, 0), r.nbytes)
    result = dict(body)
    result["receipted_bytes"] = sum(best.values())
    result["receipt_issuers"] = len({i for i, _ in best})
    return result
