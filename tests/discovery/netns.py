"""Network namespaces for the tests: a bridge, nodes on it, processes inside, clean-up.

Addresses come from 198.18.0.0/15 (benchmarking range, never routed). All
nodes share one /15 bridge; each node gets its own /24 (198.18.<n>.2) so the
store's per-/24 caps see distinct ranges, as distinct hosts would be.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "network-namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"wsdprobe{os.getpid() % 100000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(*argv: str) -> None:
    """Run a setup command, failing loudly."""
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


class Topology:
    """A bridge namespace and node namespaces attached to it by veth pairs."""

    def __init__(self) -> None:
        self.tag = f"wsd{os.getpid() % 100000}"
        self.bridge_ns = f"{self.tag}br"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.count = 0
        run("ip", "netns", "add", self.bridge_ns)
        self.namespaces.append(self.bridge_ns)
        self.ns_run(self.bridge_ns, "ip", "link", "add", "br0", "type", "bridge")
        self.ns_run(self.bridge_ns, "ip", "link", "set", "br0", "up")
        self.ns_run(self.bridge_ns, "ip", "link", "set", "lo", "up")

    def ns_run(self, ns: str, *argv: str) -> None:
        """Run a command inside namespace ``ns``."""
        run("ip", "netns", "exec", ns, *argv)

    def add_node(self, name: str) -> tuple[str, str]:
        """A new namespace on the bridge; returns (namespace, its address)."""
        self.count += 1
        n = self.count
        ns = f"{self.tag}{name}"
        addr = f"198.18.{n}.2"
        host_end, br_end = f"{self.tag}a{n}", f"{self.tag}b{n}"
        run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", br_end)
        run("ip", "link", "set", host_end, "netns", ns)
        run("ip", "link", "set", br_end, "netns", self.bridge_ns)
        self.ns_run(self.bridge_ns, "ip", "link", "set", br_end, "master", "br0")
        self.ns_run(self.bridge_ns, "ip", "link", "set", br_end, "up")
        self.ns_run(ns, "ip", "link", "set", host_end, "name", "eth0")
        self.ns_run(ns, "ip", "addr", "add", f"{addr}/15", "dev", "eth0")
        self.ns_run(ns, "ip", "link", "set", "eth0", "up")
        self.ns_run(ns, "ip", "link", "set", "lo", "up")
        return ns, addr

    def spawn(
        self, ns: str, argv: Sequence[str], env: dict[str, str] | None = None, **kw: object
    ) -> subprocess.Popen[bytes]:
        """Start a process inside ``ns`` (``ip netns exec`` execs it: same PID)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            env={**os.environ, **(env or {})},
            **kw,  # type: ignore[call-overload]
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process by PID, then delete every namespace."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.namespaces.clear()
