"""Authenticated peer requests: who is asking, proven per request.

A requesting peer adds one header::

    Webseed-Peer: id=<peer id>, ts=<unix seconds>, nonce=<16 random bytes, b64url>, sig=<b64url>

``sig`` is the requester's Ed25519 signature (domain ``webseed-auth-v1``) over
the lines ``method``, ``host``, ``path`` (with query), ``range`` (empty if
none), ``ts`` and ``nonce``. The serving peer checks it with
:class:`RequestVerifier`: the timestamp must lie within a clock-skew window,
and each ``(id, nonce)`` is accepted once. So a peer cannot claim another's id
(it lacks the key), and cannot replay a captured header to be served on
someone else's credit: not for another path, range or host (signed), not later
(timestamp), not again (nonce cache).

The verifier is sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from dataclasses import dataclass

from webseed.errors import SignatureError

from . import log
from .errors import AuthError
from .identity import PeerIdentity, b64d, b64e, verify

HEADER = "Webseed-Peer"
DOMAIN = "webseed-auth-v1"
#: Longest header value accepted; a real one is about 200 bytes.
MAX_HEADER = 512


@dataclass(frozen=True)
class SignedRequest:
    """The parsed fields of a ``Webseed-Peer`` header."""

    peer_id: str
    ts: int
    nonce: str
    sig: bytes


def _message(method: str, host: str, path: str, range_: str, ts: int, nonce: str) -> bytes:
    for field in (method, host, path, range_):
        if "\n" in field:
            raise AuthError("newline in a signed request field")
    return "\n".join((method.upper(), host.lower(), path, range_, str(ts), nonce)).encode()


def sign_request(
    identity: PeerIdentity,
    method: str,
    host: str,
    path: str,
    range_: str = "",
    *,
    now: float,
    nonce: bytes | None = None,
) -> str:
    """The ``Webseed-Peer`` header value for one request."""
    ts = int(now)
    nonce_s = b64e(nonce if nonce is not None else os.urandom(16))
    sig = identity.sign(DOMAIN, _message(method, host, path, range_, ts, nonce_s))
    return f"id={identity.peer_id}, ts={ts}, nonce={nonce_s}, sig={b64e(sig)}"


def parse_header(value: str) -> SignedRequest:
    """Parse a header value; :class:`AuthError` if it is malformed or truncated."""
    if not isinstance(value, str) or len(value) > MAX_HEADER:
        raise AuthError("identity header missing or too long")
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep or key in fields:
            raise AuthError("malformed identity header")
        fields[key] = val
    if set(fields) != {"id", "ts", "nonce", "sig"}:
        raise AuthError("identity header needs exactly id, ts, nonce, sig")
    ts_s = fields["ts"]
    if not ts_s.isdigit() or len(ts_s) > 12:
        raise AuthError("bad timestamp in identity header")
    try:
        nonce = b64d(fields["nonce"])
        sig = b64d(fields["sig"])
    except ValueError as exc:
        raise AuthError("bad base64 in identity header") from exc
    if not 8 <= len(nonce) <= 32 or len(sig) != 64:
        raise AuthError("truncated identity header")
    return SignedRequest(fields["id"], int(ts_s), fields["nonce"], sig)


class RequestVerifier:
    """Checks ``Webseed-Peer`` headers: signature, clock skew, one use per nonce.

    The replay cache holds at most ``cache_size`` nonces. When it is full the
    oldest entry is dropped and its timestamp becomes a floor: any header at or
    below the floor is refused, so an evicted nonce can never be replayed (at
    worst, under a flood, honest but slightly late requests are refused and
    retried with a fresh header).
    """

    def __init__(self, skew: float = 120.0, cache_size: int = 65536) -> None:
        if skew <= 0 or cache_size <= 0:
            raise ValueError("skew and cache_size must be positive")
        self.skew = skew
        self.cache_size = cache_size
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._floor = -1

    def _expire(self, now: float) -> None:
        # Entries are inserted in arrival order, not ts order; scan a bounded prefix.
        for key in list(itertools.islice(self._seen, 64)):
            if self._seen[key] < now - self.skew:
                del self._seen[key]

    def verify(
        self, header: str | None, method: str, host: str, path: str, range_: str = "", *, now: float
    ) -> str:
        """The verified peer id of a request; :class:`AuthError` (logged) if it is not valid."""
        try:
            if header is None:
                raise AuthError("no identity header")
            req = parse_header(header)
            if abs(req.ts - now) > self.skew:
                raise AuthError(f"identity header timestamp off by {req.ts - now:+.0f}s")
            key = (req.peer_id, req.nonce)
            if key in self._seen or req.ts <= self._floor:
                raise AuthError("replayed identity header")
            try:
                verify(
                    req.peer_id,
                    DOMAIN,
                    _message(method, host, path, range_, req.ts, req.nonce),
                    req.sig,
                )
            except SignatureError as exc:
                raise AuthError(f"identity header does not match its signature: {exc}") from exc
        except AuthError as exc:
            log.warning("rejected request identity (%s %s): %s", method, path, exc)
            raise
        self._expire(now)
        if len(self._seen) >= self.cache_size:
            _, oldest_ts = self._seen.popitem(last=False)
            self._floor = max(self._floor, oldest_ts)
        self._seen[key] = req.ts
        return req.peer_id
