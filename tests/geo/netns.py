"""A network namespace holding a mirror, for black-hole and ``tc tbf`` scenarios.

Layout (all in 198.19.0.0/16, part of the benchmarking range 198.18.0.0/15):

    host  wg<id>h 198.19.N.1/30  <== veth ==>  198.19.N.2/30 wg<id>n  namespace
    route 198.19.N.8/29 via 198.19.N.2: the namespace does not forward, so SYNs
    to those addresses vanish without an answer (a black-holed mirror).

``tc tbf`` on the namespace's end shapes what its mirror sends. Everything is
removed by deleting the namespace (the veth pair and the host route go with it).
Needs root and iproute2; the tests skip with the reason otherwise.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10)


class MirrorNamespace:
    """One namespace + veth + black-hole route; :meth:`listen` opens a socket inside."""

    def __init__(self, index: int, rate: str | None = None) -> None:
        tag = f"{os.getpid() % 100000}{index}"
        self.name = f"wsgeo{tag}"
        self.host_if, self.ns_if = f"wg{tag}h", f"wg{tag}n"
        octet = 100 + (os.getpid() + index) % 150
        self.host_ip, self.ns_ip = f"198.19.{octet}.1", f"198.19.{octet}.2"
        self.blackhole_ip = f"198.19.{octet}.9"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=self.name)
            _ip("link", "set", self.ns_if, "up", ns=self.name)
            _ip("link", "set", "lo", "up", ns=self.name)
            _ip("route", "add", f"198.19.{octet}.8/29", "via", self.ns_ip)
            if rate is not None:
                subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        self.name,
                        "tc",
                        "qdisc",
                        "add",
                        "dev",
                        self.ns_if,
                        "root",
                        "tbf",
                        "rate",
                        rate,
                        "burst",
                        "32kb",
                        "latency",
                        "50ms",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
        except BaseException:
            self.close()
            raise

    def listen(self) -> socket.socket:
        """A listening TCP socket on the namespace's address, made from this process.

        A helper thread enters the namespace (``setns`` changes only the calling
        thread), creates and binds the socket, and ends; the socket stays in the
        namespace and can be served from any thread of this process, so servers
        in the namespace share this process's clock (server-side timing).
        """
        made: list[socket.socket | BaseException] = []

        def enter_and_bind() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.name}") as f:
                    if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                sock = socket.socket()
                sock.bind((self.ns_ip, 0))
                sock.listen(128)
                made.append(sock)
            except BaseException as exc:
                made.append(exc)

        thread = threading.Thread(target=enter_and_bind)
        thread.start()
        thread.join(10)
        if not made or isinstance(made[0], BaseException):
            raise RuntimeError(f"cannot listen in namespace {self.name}: {made}")
        return made[0]

    @property
    def blackhole_url(self) -> str:
        return f"http://{self.blackhole_ip}:80/"

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        ns = MirrorNamespace(9)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a network namespace: {exc}"
    ns.close()
    return None
