"""Local peer discovery by UDP multicast, in the spirit of BitTorrent's BEP 14.

Off unless enabled. Every ``interval`` seconds (and at start) a peer sends
one datagram to ``239.192.152.143:6772`` (BEP 14's group, a neighbouring
port so BitTorrent clients ignore it), TTL 1 so it never leaves the LAN::

    WEBSEED-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6772\\r\\n
    Cookie: <random per process>\\r\\n
    Announcement: <base64url of the canonical signed announcement>\\r\\n
    \\r\\n

Receivers verify the announcement like any gossiped one (signature, expiry,
size, caps) and ignore their own cookie.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import struct
from collections.abc import Callable
from typing import Any

from peer.incentives.identity import b64d, b64e

from .announce import Announcement
from .store import GossipStore

GROUP = "239.192.152.143"
PORT = 6772
MAX_DATAGRAM = 12 * 1024
_HEAD = b"WEBSEED-SEARCH * HTTP/1.1\r\n"


def encode_datagram(ann: Announcement, cookie: str, group: str = GROUP, port: int = PORT) -> bytes:
    """The multicast datagram carrying ``ann``."""
    return (
        _HEAD
        + f"Host: {group}:{port}\r\nCookie: {cookie}\r\n".encode()
        + b"Announcement: "
        + b64e(ann.encode()).encode()
        + b"\r\n\r\n"
    )


def decode_datagram(data: bytes) -> tuple[str, bytes] | None:
    """``(cookie, announcement bytes)`` of a datagram, or ``None`` if it is not one of ours."""
    if len(data) > MAX_DATAGRAM or not data.startswith(_HEAD):
        return None
    fields: dict[str, str] = {}
    for line in data[len(_HEAD) :].split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    try:
        return fields.get("cookie", ""), b64d(fields["announcement"])
    except (KeyError, ValueError):
        return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: LanDiscovery) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner.received(data, str(addr[0]))


class LanDiscovery:
    """Sends our announcement to the LAN group and feeds what it hears into ``store``."""

    def __init__(
        self,
        store: GossipStore,
        *,
        interface: str = "0.0.0.0",
        group: str = GROUP,
        port: int = PORT,
        on_peer: Callable[[Announcement], None] | None = None,
    ) -> None:
        self.store = store
        self.interface = interface
        self.group = group
        self.port = port
        self.on_peer = on_peer
        self.cookie = secrets.token_hex(8)
        self.heard = 0
        self.sent = 0
        self._transport: asyncio.DatagramTransport | None = None
        self._send_sock: socket.socket | None = None

    def received(self, data: bytes, sender: str) -> None:
        """One datagram arrived from ``sender``."""
        decoded = decode_datagram(data)
        if decoded is None or decoded[0] == self.cookie:
            return
        self.heard += 1
        verdict = self.store.add_raw(decoded[1], source="lan:" + sender)
        if verdict in ("added", "updated") and self.on_peer is not None:
            ann = self.store.get(json.loads(decoded[1])["peer"])
            if ann is not None:
                self.on_peer(ann)

    async def start(self) -> None:
        """Join the group and listen."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", self.port))
        mreq = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton(self.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.interface))
        self._send_sock = send

    def announce(self) -> bool:
        """Send our current announcement once; False if we have none or are not started."""
        own = self.store.own
        if own is None or self._send_sock is None:
            return False
        self._send_sock.sendto(
            encode_datagram(own, self.cookie, self.group, self.port), (self.group, self.port)
        )
        self.sent += 1
        return True

    async def run(
        self, stop: asyncio.Event, interval: float = 60.0, max_rounds: int = 100_000
    ) -> None:
        """Announce every ``interval`` seconds until ``stop``."""
        for _ in range(max_rounds):
            self.announce()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except TimeoutError:
                continue

    def close(self) -> None:
        """Leave the group and close the sockets."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._send_sock is not None:
            self._send_sock.close()
            self._send_sock = None
