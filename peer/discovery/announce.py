"""The signed self-announcement a peer publishes about itself.

Wire form: one JSON object, canonical (sorted keys, no spaces, ASCII)::

    {"v": 1, "peer": <peer id>, "urls": [<base URL>...], "outbound_only": false,
     "relays": [<relay base URL>...], "have": [<manifest digest hex>...],
     "issued": <unix s>, "expires": <unix s>, "sig": <base64url Ed25519>}

``sig`` signs the canonical encoding of every other field in the domain
``webseed-announce-v1`` (see :mod:`peer.incentives.identity`). Everything is
bounded so a single announcement costs at most :data:`MAX_BYTES` to keep and
one signature check to verify.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from peer.incentives.identity import PeerIdentity, b64d, b64e, is_peer_id, verify
from webseed.errors import SignatureError

from .errors import AnnouncementError

DOMAIN = "webseed-announce-v1"
VERSION = 1
#: Largest encoded announcement accepted.
MAX_BYTES = 8192
MAX_URLS = 4
MAX_RELAYS = 2
MAX_URL_LENGTH = 200
MAX_HAVE = 64
#: Longest lifetime an announcement may claim; longer ones are refused, not clipped.
MAX_LIFETIME = 3600
#: How far in the future ``issued`` may lie (clock skew between peers).
MAX_SKEW = 300
DEFAULT_LIFETIME = 1800

_DIGEST = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset(
    {"v", "peer", "urls", "outbound_only", "relays", "have", "issued", "expires", "sig"}
)


def canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON: sorted keys, compact separators, ASCII only."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def check_url(url: object) -> str:
    """A peer base URL: http(s), a host, no credentials/query/fragment, bounded length."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or not url.isascii():
        raise AnnouncementError("bad url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise AnnouncementError("bad url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AnnouncementError("url must be http(s)://host[:port][/path]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise AnnouncementError("url must not carry credentials, query or fragment")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise AnnouncementError("bad url")
    return url.rstrip("/")


def valid_url(url: object) -> str | None:
    """:func:`check_url`'s normalised URL, or None where it would refuse it."""
    try:
        return check_url(url)
    except AnnouncementError:
        return None


def address_group(url: str) -> str:
    """The address range a URL's host falls in: /24 for IPv4, /48 for IPv6, else the name.

    Caps and diversity are counted per group, so one operator holding a subnet
    cannot fill a store with many identities (eclipse resistance).
    """
    host = urlsplit(url).hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "dns:" + host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class Announcement:
    """A verified (or about-to-be-signed) self-announcement."""

    peer: str
    urls: tuple[str, ...]
    issued: int
    expires: int
    have: tuple[str, ...] = ()
    outbound_only: bool = False
    relays: tuple[str, ...] = ()
    sig: str = ""
    raw: bytes = field(default=b"", compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        """The signed fields (everything but ``sig``)."""
        return {
            "v": VERSION,
            "peer": self.peer,
            "urls": list(self.urls),
            "outbound_only": self.outbound_only,
            "relays": list(self.relays),
            "have": list(self.have),
            "issued": self.issued,
            "expires": self.expires,
        }

    def to_json(self) -> dict[str, Any]:
        """The wire object, signature included."""
        return {**self.body(), "sig": self.sig}

    def encode(self) -> bytes:
        """Canonical wire bytes."""
        return self.raw or canonical(self.to_json())

    @property
    def contact_urls(self) -> tuple[str, ...]:
        """Where to reach the peer: its own URLs, else its relays."""
        return self.urls or self.relays

    @property
    def groups(self) -> frozenset[str]:
        """Address groups of every URL it names (empty for a peer with none)."""
        return frozenset(address_group(u) for u in self.urls + self.relays)

    def fresh(self, now: float) -> bool:
        """Issued no later than ``now`` (plus skew) and not yet expired."""
        return self.issued <= now + MAX_SKEW and now < self.expires

    def holds(self, manifest: str) -> bool:
        """True if it announces the artifact with manifest digest ``manifest``."""
        return manifest in self.have


def build(
    identity: PeerIdentity,
    urls: Iterable[str],
    now: float,
    *,
    have: Iterable[str] = (),
    outbound_only: bool = False,
    relays: Iterable[str] = (),
    lifetime: int = DEFAULT_LIFETIME,
) -> Announcement:
    """Sign a fresh announcement of ``identity``; validates what it signs."""
    issued = int(now)
    ann = Announcement(
        peer=identity.peer_id,
        urls=tuple(check_url(u) for u in urls),
        issued=issued,
        expires=issued + lifetime,
        have=tuple(sorted(set(have))),
        outbound_only=outbound_only,
        relays=tuple(check_url(u) for u in relays),
    )
    signed = Announcement(
        **{**ann.__dict__, "sig": b64e(identity.sign(DOMAIN, canonical(ann.body()))), "raw": b""}
    )
    raw = canonical(signed.to_json())
    _check_shape(json.loads(raw))
    return Announcement(**{**signed.__dict__, "raw": raw})


def _str_list(obj: Mapping[str, Any], key: str, limit: int) -> list[str]:
    value = obj.get(key, [])
    if not isinstance(value, list) or len(value) > limit:
        raise AnnouncementError(f"{key}: list of at most {limit}")
    if not all(isinstance(v, str) for v in value):
        raise AnnouncementError(f"{key}: strings only")
    if len(set(value)) != len(value):
        raise AnnouncementError(f"{key}: duplicates")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value < 2**40:
        raise AnnouncementError(f"{key}: not a timestamp")
    return value


def _check_shape(obj: object) -> Announcement:
    if not isinstance(obj, dict):
        raise AnnouncementError("announcement is not a JSON object")
    if set(obj) - _FIELDS or not {"v", "peer", "issued", "expires", "sig"} <= set(obj):
        raise AnnouncementError("unknown or missing fields")
    if obj["v"] != VERSION:
        raise AnnouncementError(f"unsupported version {obj['v']!r:.20}")
    if not is_peer_id(obj["peer"]):
        raise AnnouncementError("peer is not a peer id")
    urls = tuple(check_url(u) for u in _str_list(obj, "urls", MAX_URLS))
    relays = tuple(check_url(u) for u in _str_list(obj, "relays", MAX_RELAYS))
    have = _str_list(obj, "have", MAX_HAVE)
    if not all(_DIGEST.fullmatch(h) for h in have) or have != sorted(have):
        raise AnnouncementError("have: sorted lowercase hex sha256 digests")
    outbound_only = obj.get("outbound_only", False)
    if not isinstance(outbound_only, bool):
        raise AnnouncementError("outbound_only: boolean")
    if not urls and not relays and not outbound_only:
        raise AnnouncementError("a reachable peer must name a url")
    if outbound_only and urls:
        raise AnnouncementError("an outbound-only peer names no url of its own")
    issued, expires = _int(obj, "issued"), _int(obj, "expires")
    if not issued < expires <= issued + MAX_LIFETIME:
        raise AnnouncementError("bad lifetime")
    if not isinstance(obj["sig"], str):
        raise AnnouncementError("sig: string")
    return Announcement(
        peer=obj["peer"],
        urls=urls,
        issued=issued,
        expires=expires,
        have=tuple(have),
        outbound_only=outbound_only,
        relays=relays,
        sig=obj["sig"],
    )


def parse(data: bytes | Mapping[str, Any], now: float) -> Announcement:
    """Validate one announcement (bytes or decoded JSON object) at time ``now``.

    Checks in order of cost: size, shape, freshness, then the signature.
    Raises :class:`AnnouncementError` on anything wrong.
    """
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_BYTES:
            raise AnnouncementError("announcement too large")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise AnnouncementError("announcement is not JSON") from exc
    else:
        obj = data
    ann = _check_shape(obj)
    raw = canonical(ann.to_json())
    if len(raw) > MAX_BYTES:
        raise AnnouncementError("announcement too large")
    if not ann.fresh(now):
        raise AnnouncementError("announcement expired or issued in the future")
    try:
        sig = b64d(ann.sig)
        verify(ann.peer, DOMAIN, canonical(ann.body()), sig)
    except (ValueError, SignatureError) as exc:
        raise AnnouncementError(f"forged announcement: {exc}") from exc
    return Announcement(**{**ann.__dict__, "raw": raw})
