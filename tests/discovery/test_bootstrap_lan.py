"""Bootstrap sources, the persisted last-served peers, and the LAN datagram format."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from peer.discovery import bootstrap
from peer.discovery.announce import build
from peer.discovery.lan import MAX_DATAGRAM, LanDiscovery, decode_datagram, encode_datagram
from peer.discovery.store import GossipStore
from peer.incentives.identity import PeerIdentity
from tests.prereq import missing, needs

NOW = 1_800_000_000.0


def test_last_served_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "state"
    path = bootstrap.save_last_served(d, {"http://198.18.1.2:8470/": 100, "bad url": 5}, NOW)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    bootstrap.save_last_served(d, {"http://198.18.2.2:8470": 7, "http://x.example": 0}, NOW + 10)
    peers = bootstrap.load_last_served(d, NOW + 20)
    assert [p["url"] for p in peers] == ["http://198.18.2.2:8470", "http://198.18.1.2:8470"]
    assert bootstrap.load_last_served(d, NOW + bootstrap.MAX_AGE + 11) == []
    many = {f"http://198.18.3.{i}": i + 1 for i in range(bootstrap.MAX_REMEMBERED + 5)}
    bootstrap.save_last_served(d, many, NOW + 30)
    assert len(bootstrap.load_last_served(d, NOW + 30)) == bootstrap.MAX_REMEMBERED


def test_last_served_hostile_files(tmp_path: Path) -> None:
    f = tmp_path / bootstrap.LAST_SERVED_FILE
    assert bootstrap.load_last_served(tmp_path) == []  # missing
    f.write_text("{not json")
    assert bootstrap.load_last_served(tmp_path) == []
    f.write_text(json.dumps({"peers": [1, {"url": "ftp://x", "last": NOW}, {"url": "http://a"}]}))
    assert bootstrap.load_last_served(tmp_path, NOW) == []
    f.write_text(json.dumps({"peers": [{"url": "http://a", "last": NOW, "bytes": "x"}]}))
    assert bootstrap.load_last_served(tmp_path, NOW)[0]["bytes"] == 0
    f.write_bytes(b" " * (bootstrap.MAX_FILE + 1))
    assert bootstrap.load_last_served(tmp_path) == []


def test_bootstrap_order_and_dedup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap.save_last_served(tmp_path, {"http://198.18.9.2": 1, "http://named.example": 1}, NOW)
    urls = bootstrap.bootstrap_urls(
        named=["http://named.example/", "nonsense"],
        state_dir=tmp_path,
        index_mirrors=[{"url": "https://mirror.example"}, {"url": 5}, {"lat": 1.0}],
        now=NOW,
    )
    assert urls == ["http://named.example", "http://198.18.9.2", "https://mirror.example"]
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert bootstrap.default_state_dir() == tmp_path / "xdg" / "webseed" / "discovery"
    monkeypatch.setenv("XDG_STATE_HOME", "relative")
    assert bootstrap.default_state_dir().parts[-4:] == (".local", "state", "webseed", "discovery")


def test_datagram_format() -> None:
    ann = build(PeerIdentity.generate(), ["http://198.18.1.2:8470"], NOW)
    data = encode_datagram(ann, "c00k1e")
    assert data.startswith(b"WEBSEED-SEARCH * HTTP/1.1\r\n") and len(data) < 2048
    assert decode_datagram(data) == ("c00k1e", ann.encode())
    assert decode_datagram(b"BT-SEARCH * HTTP/1.1\r\n\r\n") is None
    assert decode_datagram(data.replace(b"Announcement: ", b"Announcement: !")) is None
    assert decode_datagram(data + b"x" * MAX_DATAGRAM) is None
    no_field = data.replace(b"Announcement:", b"Other:")
    assert decode_datagram(no_field) is None


def _multicast_on_loopback() -> bool:
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.sendto(b"x", ("239.192.152.143", 9))
        s.close()
        return True
    except OSError:
        return False


def test_lan_receive_path_in_process() -> None:
    """The receive path with real datagrams handed over (no multicast needed)."""
    clock = lambda: NOW  # noqa: E731
    store = GossipStore(clock=clock)
    heard: list[str] = []
    lan = LanDiscovery(store, on_peer=lambda a: heard.append(a.peer))
    other = build(PeerIdentity.generate(), ["http://198.18.3.2:8470"], NOW)
    lan.received(encode_datagram(other, "someone-else"), "198.18.3.2")
    lan.received(encode_datagram(other, lan.cookie), "198.18.3.2")  # our own: ignored
    lan.received(b"garbage", "198.18.3.2")
    forged = json.loads(other.encode()) | {"urls": ["http://198.18.66.6"]}
    lan.received(
        b"WEBSEED-SEARCH * HTTP/1.1\r\nCookie: z\r\nAnnouncement: "
        + __import__("base64").urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=")
        + b"\r\n\r\n",
        "198.18.66.6",
    )
    assert heard == [other.peer] and len(store) == 1 and lan.heard == 2
    assert not lan.announce()  # not started, no own announcement


@needs(not _multicast_on_loopback(), "no multicast route on this host")
def test_lan_start_and_announce_on_host() -> None:
    """Real sockets: join the group, announce once, close (delivery is tested in netns)."""

    async def go() -> None:
        store = GossipStore(clock=lambda: NOW)
        store.set_own(build(PeerIdentity.generate(), ["http://198.18.1.2:8470"], NOW))
        lan = LanDiscovery(store, interface="127.0.0.1", port=46000 + os.getpid() % 1000)
        try:
            await lan.start()
        except OSError as exc:
            missing(f"cannot join a multicast group here: {exc}")
        stop = asyncio.Event()
        task = asyncio.create_task(lan.run(stop, interval=0.05))
        await asyncio.sleep(0.2)
        stop.set()
        await task
        lan.close()
        lan.close()
        assert lan.sent >= 2

    asyncio.run(go())
