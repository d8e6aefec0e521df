"""Signed receipts: portable evidence that an uploader gave bytes to a downloader.

The downloader (``issuer``) periodically signs, for one uploader and one
artifact, the *cumulative* number of verified bytes it received from that
uploader, with a strictly increasing sequence number and an expiry. The
uploader keeps its latest receipts and presents them to third peers, which
credit it (see :class:`ReceiptBook`).

What a receipt proves, and what it does not (see ``docs/incentives.md``):

* **Forged**: the Ed25519 signature (domain ``webseed-receipt-v1``) binds
  every field to the issuer's key; a changed byte count or a receipt made
  without the key is rejected.
* **Replayed**: counts are cumulative and sequence numbers strictly increase
  per (issuer, uploader, artifact); presenting the same or an older receipt
  again gives no new credit. Expired receipts are refused.
* **Stolen**: a receipt credits only the uploader it names, and only when that
  uploader presents it (the presenter is authenticated by :mod:`.auth`).
* **Self-issued / Sybil**: a receipt an identity issues to itself is refused;
  but identities are free, so a peer can mint receipts from fake downloaders.
  Receipt credit is therefore *bounded by the verifier's own experience*:
  credit from receipts issued by ``I`` is at most what ``I`` directly uploaded
  to the verifier (a two-hop max-flow, as in BarterCast). Sybils that never
  gave the verifier anything bring no credit; a real contributor colluding
  with a free rider can transfer at most its own contribution.
* **Huge claims**: a receipt claiming more than ``max_copies`` times the
  artifact's size (or ``max_claim`` bytes if the size is unknown) is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webseed.errors import SignatureError

from . import log
from .errors import ReceiptError
from .identity import PeerIdentity, b64d, b64e, is_peer_id, verify
from .ledger import DAY, Ledger
from .store import read_json, write_json

DOMAIN = "webseed-receipt-v1"
MAX_ENCODED = 1024
MAX_ARTIFACT = 256
#: Longest validity a verifier accepts, whatever the issuer wrote.
MAX_LIFETIME = 30 * DAY
_FIELDS = {"v", "issuer", "uploader", "artifact", "bytes", "seq", "issued", "expires", "sig"}
_INT_MAX = 2**62


@dataclass(frozen=True)
class Receipt:
    """``issuer`` got ``nbytes`` (cumulative; JSON ``bytes``) of ``artifact`` from ``uploader``."""

    issuer: str
    uploader: str
    artifact: str
    nbytes: int
    seq: int
    issued: int
    expires: int
    sig: bytes = b""

    def body(self) -> bytes:
        """The canonical signed bytes (every field but the signature)."""
        fields = {
            "v": 1,
            "issuer": self.issuer,
            "uploader": self.uploader,
            "artifact": self.artifact,
            "bytes": self.nbytes,
            "seq": self.seq,
            "issued": self.issued,
            "expires": self.expires,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, signature included."""
        data: dict[str, Any] = json.loads(self.body())
        data["sig"] = b64e(self.sig)
        return data

    def encode(self) -> bytes:
        """Canonical JSON with the signature."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: object) -> Receipt:
        """Parse and type-check (no signature check); :class:`ReceiptError` if malformed."""
        if not isinstance(data, dict) or set(data) != _FIELDS or data["v"] != 1:
            raise ReceiptError("receipt has missing, extra or unknown fields")
        ints = [data[k] for k in ("bytes", "seq", "issued", "expires")]
        if not all(type(i) is int and 0 <= i < _INT_MAX for i in ints):
            raise ReceiptError("receipt numbers must be non-negative integers")
        if not (is_peer_id(data["issuer"]) and is_peer_id(data["uploader"])):
            raise ReceiptError("receipt peer ids are malformed")
        artifact = data["artifact"]
        if not isinstance(artifact, str) or not 0 < len(artifact) <= MAX_ARTIFACT:
            raise ReceiptError("receipt artifact name is malformed")
        try:
            sig = b64d(data["sig"])
        except ValueError as exc:
            raise ReceiptError("receipt signature is not base64url") from exc
        if len(sig) != 64:
            raise ReceiptError("receipt signature is truncated")
        return cls(
            data["issuer"], data["uploader"], artifact, ints[0], ints[1], ints[2], ints[3], sig
        )

    @classmethod
    def decode(cls, raw: bytes) -> Receipt:
        """Parse an encoded receipt; :class:`ReceiptError` if it is malformed or truncated."""
        if len(raw) > MAX_ENCODED:
            raise ReceiptError("receipt too large")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReceiptError("receipt is not JSON (truncated?)") from exc
        return cls.from_dict(data)

    def check_signature(self) -> None:
        """:class:`ReceiptError` unless the issuer signed exactly these fields."""
        try:
            verify(self.issuer, DOMAIN, self.body(), self.sig)
        except SignatureError as exc:
            raise ReceiptError(f"forged receipt: {exc}") from exc


class ReceiptIssuer:
    """The downloader's side: counts verified bytes per uploader and signs receipts.

    Sequence numbers must keep increasing across restarts (verifiers refuse a
    lower one as a replay), so the counters persist to ``path`` when given.
    """

    def __init__(
        self, identity: PeerIdentity, *, lifetime: float = 7 * DAY, path: Path | None = None
    ) -> None:
        self.identity = identity
        self.lifetime = lifetime
        self.path = path
        self._state: dict[tuple[str, str], list[int]] = {}  # -> [bytes, seq]
        data = read_json(path) if path is not None else None
        if isinstance(data, list):
            for row in data:
                if isinstance(row, list) and len(row) == 4 and all(type(x) is int for x in row[2:]):
                    self._state[(str(row[0]), str(row[1]))] = [row[2], row[3]]

    def received(self, uploader: str, artifact: str, nbytes: int) -> None:
        """``nbytes`` verified bytes of ``artifact`` arrived from ``uploader``."""
        if nbytes < 0:
            raise ValueError("negative byte count")
        self._state.setdefault((uploader, artifact), [0, 0])[0] += nbytes

    def issue(self, uploader: str, artifact: str, now: float) -> Receipt:
        """A fresh signed receipt for everything received so far from ``uploader``."""
        if uploader == self.identity.peer_id:
            raise ReceiptError("will not issue a receipt to ourselves")
        state = self._state.setdefault((uploader, artifact), [0, 0])
        state[1] += 1
        unsigned = Receipt(
            self.identity.peer_id,
            uploader,
            artifact,
            state[0],
            state[1],
            int(now),
            int(now + self.lifetime),
        )
        sig = self.identity.sign(DOMAIN, unsigned.body())
        return dataclasses.replace(unsigned, sig=sig)

    def save(self) -> None:
        """Persist the counters (no-op without a path)."""
        if self.path is not None:
            write_json(self.path, [[u, a, b, s] for (u, a), (b, s) in sorted(self._state.items())])


@dataclass
class _Track:
    seq: int
    bytes: int


class ReceiptBook:
    """The verifier's side: accepts receipts presented by uploaders, turns them into credit.

    ``ledger`` is the verifier's own direct ledger; it bounds the credit
    derived from each issuer (see module docstring). ``artifact_size`` maps an
    artifact name to its size when known.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        skew: float = 300.0,
        max_claim: int = 1 << 40,
        max_copies: int = 4,
        artifact_size: Callable[[str], int | None] | None = None,
        max_tracks: int = 100_000,
    ) -> None:
        self.ledger = ledger
        self.skew = skew
        self.max_claim = max_claim
        self.max_copies = max_copies
        self.artifact_size = artifact_size
        self.max_tracks = max_tracks
        self._tracks: dict[tuple[str, str, str], _Track] = {}
        # Decayed receipted bytes per (uploader, issuer), same half-life as the ledger.
        self._vouched = Ledger(half_life=ledger.half_life, max_entries=max_tracks)

    def _limit(self, artifact: str) -> int:
        size = self.artifact_size(artifact) if self.artifact_size else None
        return min(self.max_claim, size * self.max_copies) if size is not None else self.max_claim

    def accept(self, receipt: Receipt | bytes, *, presenter: str, now: float) -> int:
        """Check a receipt presented by ``presenter``; return the new bytes it vouches for.

        Raises :class:`ReceiptError` (and logs why) for malformed, forged,
        expired, replayed, self-issued, stolen or implausible receipts; a
        rejected receipt changes nothing.
        """
        try:
            r = receipt if isinstance(receipt, Receipt) else Receipt.decode(receipt)
            r.check_signature()
            if r.issuer == r.uploader:
                raise ReceiptError("self-issued receipt")
            if presenter != r.uploader:
                raise ReceiptError("receipt presented by someone other than its uploader")
            if r.expires <= now:
                raise ReceiptError("expired receipt")
            if r.issued > now + self.skew or r.expires - r.issued > MAX_LIFETIME:
                raise ReceiptError("receipt validity window is implausible")
            if r.nbytes > self._limit(r.artifact):
                raise ReceiptError(f"receipt claims implausibly many bytes ({r.nbytes})")
            key = (r.issuer, r.uploader, r.artifact)
            track = self._tracks.get(key)
            if track is not None and r.seq <= track.seq:
                raise ReceiptError("replayed or stale receipt")
            if track is not None and r.nbytes < track.bytes:
                raise ReceiptError("receipt count went backwards")
        except ReceiptError as exc:
            log.warning("rejected receipt from presenter %s…: %s", presenter[:12], exc)
            raise
        delta = r.nbytes - (track.bytes if track else 0)
        if track is None and len(self._tracks) >= self.max_tracks:
            # Bounded memory; forgetting a track can only let an old receipt re-credit
            # bytes still capped by the issuer's direct contribution.
            self._tracks.pop(next(iter(self._tracks)))
        self._tracks[key] = _Track(r.seq, r.nbytes)
        self._vouched.record_download(r.uploader, r.issuer, delta, now)
        return delta

    def vouched(self, uploader: str, issuer: str, now: float) -> float:
        """Decayed bytes ``issuer`` has receipted to ``uploader`` (before the bound)."""
        return self._vouched.get(uploader, issuer, now).down

    def credit(self, uploader: str, now: float) -> float:
        """Receipt credit: Σ over issuers of min(receipted to ``uploader``, issuer's credit)."""
        total = 0.0
        for (up, issuer), entry in self._vouched._entries.items():
            if up == uploader:
                vouched = entry.at(now, self._vouched.half_life).down
                total += min(vouched, self.ledger.credit(issuer, now))
        return total


def contribution(
    ledger: Ledger, book: ReceiptBook | None, peer: str, now: float, receipt_weight: float = 0.5
) -> float:
    """One number for priority: direct credit plus (discounted) receipt credit."""
    direct = ledger.credit(peer, now)
    indirect = book.credit(peer, now) if book is not None else 0.0
    value = direct + receipt_weight * indirect
    return value if math.isfinite(value) else 0.0


def credits(
    ledger: Ledger, book: ReceiptBook | None, peers: Mapping[str, object] | set[str], now: float
) -> dict[str, float]:
    """:func:`contribution` for several peers at once."""
    return {p: contribution(ledger, book, p, now) for p in peers}
