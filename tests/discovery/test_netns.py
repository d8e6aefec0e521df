"""Discovery across network namespaces: real processes, real HTTP, real squid, real nft.

Topology (all on one bridge, each namespace its own /24 inside 198.18.0.0/15):

* ``boot`` — the bootstrap peer (also the relay of the outbound-only peer);
* ``p1``..``p6`` — six peers; only p1 and p2 know ``boot``; p3 knows p1, p4 p3,
  p5 p4, p6 p5 (a chain: everything else must be learnt by exchange);
* ``out`` — an outbound-only peer: inbound connections dropped by nft; it
  long-polls ``boot`` and serves its file through it;
* ``px`` — Debian squid; ``mirror`` — a plain static mirror (``http.server``);
* ``cenv``, ``cflag`` — clients whose only way out is squid (nft drops every
  other outbound packet): one finds the proxy in ``HTTP_PROXY``, the other is
  given ``--proxy``;
* ``lan1``, ``lan2`` — two peers that know nobody and find each other by
  multicast only.

Every peer holds one file named by its sha256 and downloads (``--fetch``)
every file it discovers, verifying the hash. The module creates and removes
its namespaces and stops every process by PID.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.prereq import missing

from .netns import Topology, netns_unavailable

pytestmark = pytest.mark.netns

SQUID = shutil.which("squid") or ("/usr/sbin/squid" if os.path.exists("/usr/sbin/squid") else None)
NFT = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
PORT = 8470
NO_PROXY_ENV = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "NO_PROXY": ""}

_why = netns_unavailable()
if _why is None and (SQUID is None or NFT is None):
    _why = "squid and nft are needed (.ci/system-deps.sh installs them)"


def _ruleset_only_proxy(proxy: str) -> str:
    return f"""table inet wsd {{
  chain out {{ type filter hook output priority 0; policy drop;
    oif lo accept
    ip daddr {proxy} tcp dport 3128 accept
  }}
}}"""


RULESET_NO_INBOUND = """table inet wsd {
  chain in { type filter hook input priority 0; policy drop;
    iif lo accept
    ct state established,related accept
  }
}"""


class Swarm:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.topo = Topology()
        self.addr: dict[str, str] = {}
        self.ns: dict[str, str] = {}
        self.files: dict[str, str] = {}
        self.squid_dir: Path | None = None

    def node_ns(self, name: str) -> str:
        ns, addr = self.topo.add_node(name)
        self.ns[name], self.addr[name] = ns, addr
        return ns

    def url(self, name: str) -> str:
        return f"http://{self.addr[name]}:{PORT}"

    def peer(
        self, name: str, *extra: str, env: dict[str, str] | None = None, host: bool = True
    ) -> None:
        d = self.tmp / name
        d.mkdir()
        data = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB, distinct per peer
        digest = hashlib.sha256(data).hexdigest()
        (d / digest).write_bytes(data)
        self.files[name] = digest
        argv = [sys.executable, "-m", "tests.discovery.nodeproc", "--dir", str(d)]
        argv += ["--status", str(self.tmp / f"{name}.json"), "--interval", "0.5", "--fetch"]
        argv += ["--fetch-dir", str(self.tmp / f"{name}-got")]
        (self.tmp / f"{name}-got").mkdir()
        if host:
            argv += ["--host", self.addr[name], "--port", str(PORT)]
        with open(self.tmp / f"{name}.log", "wb") as log:
            self.topo.spawn(
                self.ns[name],
                [*argv, *extra],
                env={**NO_PROXY_ENV, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def status(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.tmp / f"{name}.json").read_text())
        except (OSError, ValueError):
            return {}

    def diagnose(self) -> str:
        """Every node's view, named and compact: what a failure message needs."""
        statuses = {n: self.status(n) for n in self.files if n != "mirror"}
        names = {st.get("peer", ""): n for n, st in statuses.items() if st.get("peer")}
        members = set(names.values())
        lines = []
        for name, st in statuses.items():
            if not st:
                lines.append(f"{name}: no status (log: {self.log_tail(name)!r})")
                continue
            known = {names.get(p, p[:8]) for p in st.get("known", [])}
            missing = sorted(members - known - {name})
            failed = sorted(
                names.get(k.partition("/")[0], k[:8])
                for k, ok in st.get("fetched", {}).items()
                if not ok
            )
            age = round(time.time() - st.get("time", 0), 1)
            lines.append(
                f"{name}: knows {len(known)}, not {missing}; fetch failed {failed}; "
                f"contacts [ok, failed, retry in s] {st.get('contacts')}; "
                f"errors {st.get('errors')}; relayed {st.get('relayed')}; "
                f"served via relay {st.get('served_via_relay')}; "
                f"hub {self._named(st.get('hub', {}), names)}; "
                f"workers {st.get('workers')}; status {age} s old"
            )
        return "\n".join(lines)

    @staticmethod
    def _named(sessions: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
        return {names.get(p, p[:8]): v for p, v in sessions.items()}

    def log_tail(self, name: str, size: int = 400) -> str:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def nft(self, name: str, ruleset: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.ns[name], NFT or "nft", "-f", "-"],
            input=ruleset,
            text=True,
            check=True,
            capture_output=True,
            timeout=10,
        )

    def in_ns(self, name: str, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[name], sys.executable, "-c", code],
            env={**os.environ, **NO_PROXY_ENV, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )


PEERS = ["boot", "p1", "p2", "p3", "p4", "p5", "p6"]
CHAIN = {"p1": "boot", "p2": "boot", "p3": "p1", "p4": "p3", "p5": "p4", "p6": "p5"}


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    if _why is not None:
        missing(_why)
    tmp = tmp_path_factory.mktemp("netns")
    os.chmod(tmp, 0o755)
    s = Swarm(tmp)
    try:
        for name in [*PEERS, "out", "px", "mirror", "cenv", "cflag", "lan1", "lan2"]:
            s.node_ns(name)
        # squid, the only way out for the two clients.
        # squid drops to user 'proxy', who cannot enter pytest's 0700 tmp tree.
        sq = Path(tempfile.mkdtemp(prefix="wsd-squid-"))
        s.squid_dir = sq
        os.chmod(sq, 0o777)
        (sq / "squid.conf").write_text(
            f"http_port {s.addr['px']}:3128\nacl lan src 198.18.0.0/15\n"
            "http_access allow lan\nhttp_access deny all\ncache deny all\n"
            f"pid_filename {sq}/squid.pid\naccess_log stdio:{sq}/access.log\n"
            f"cache_log {sq}/cache.log\ncoredump_dir {sq}\nshutdown_lifetime 1 seconds\n"
            "dns_nameservers 127.0.0.1\n"
        )
        s.topo.spawn(s.ns["px"], [SQUID or "squid", "-N", "-f", str(sq / "squid.conf")])
        mirror = tmp / "mirror-files"
        mirror.mkdir()
        blob = os.urandom(200_000)
        s.files["mirror"] = hashlib.sha256(blob).hexdigest()
        (mirror / s.files["mirror"]).write_bytes(blob)
        s.topo.spawn(
            s.ns["mirror"],
            [sys.executable, "-m", "http.server", str(PORT), "--bind", s.addr["mirror"]],
            cwd=str(mirror),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        s.nft("cenv", _ruleset_only_proxy(s.addr["px"]))
        s.nft("cflag", _ruleset_only_proxy(s.addr["px"]))
        s.nft("out", RULESET_NO_INBOUND)
        s.peer("boot")
        time.sleep(1.0)
        for name, known in CHAIN.items():
            s.peer(name, "--bootstrap", s.url(known))
        boot = s.url("boot")
        s.peer("out", "--outbound-only", "--relay", boot, "--bootstrap", boot, host=False)
        proxy = f"http://{s.addr['px']}:3128"
        s.peer(
            "cenv", "--outbound-only", "--bootstrap", boot, env={"HTTP_PROXY": proxy}, host=False
        )
        s.peer("cflag", "--outbound-only", "--bootstrap", boot, "--proxy", proxy, host=False)
        s.peer("lan1", "--lan", s.addr["lan1"])
        s.peer("lan2", "--lan", s.addr["lan2"])
        yield s
    finally:
        s.topo.close()
        if s.squid_dir is not None:
            shutil.rmtree(s.squid_dir, ignore_errors=True)


def _wait(pred: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.25)
    return False


def test_swarm_discovers_everyone_by_exchange(swarm: Swarm) -> None:
    """Seven reachable peers plus the outbound-only one: all learn all, fetch all."""
    members = [*PEERS, "out"]

    def ids() -> dict[str, str]:
        return {n: swarm.status(n).get("peer", "") for n in members}

    assert _wait(lambda: all(ids().values()), 90), swarm.diagnose()
    everyone = ids()

    def complete() -> bool:
        for name in PEERS:
            st = swarm.status(name)
            want = {everyone[m] for m in members if m != name}
            if not want <= set(st.get("known", [])):
                return False
            oks = [k for k, v in st.get("fetched", {}).items() if v]
            if len(oks) < len(members) - 1:
                return False
        return True

    assert _wait(complete, 60), swarm.diagnose()
    for name in PEERS:  # verified bytes on disk, from every other peer
        got = {p.name for p in (swarm.tmp / f"{name}-got").iterdir()}
        assert {swarm.files[m] for m in members if m != name} <= got


def test_outbound_only_peer_contributes(swarm: Swarm) -> None:
    """Inbound is dropped by nft, yet its file reaches the others through the relay."""
    six = 64 * 1024 * 6
    assert _wait(lambda: swarm.status("out").get("served_via_relay", 0) >= six, 60), (
        swarm.diagnose()
    )
    # The relay counts an answer once it has passed it on: it may lag the worker's count.
    assert _wait(lambda: swarm.status("boot").get("relayed", 0) >= six, 30), swarm.diagnose()
    direct = swarm.in_ns(
        "p1",
        "import socket,sys\ns=socket.socket();s.settimeout(2)\n"
        f"sys.exit(s.connect_ex(('{swarm.addr['out']}', {PORT})) == 0)",
        {},
    )
    assert direct.returncode == 0, "the outbound-only namespace must not accept connections"


def test_clients_behind_squid(swarm: Swarm) -> None:
    """Only squid leads out: discovery and downloads go through it (env and --proxy)."""
    members = [*PEERS, "out"]
    for client in ("cenv", "cflag"):

        def done(c: str = client) -> bool:
            oks = [k for k, v in swarm.status(c).get("fetched", {}).items() if v]
            return len(oks) >= len(members)

        assert _wait(done, 60), f"{client}:\n{swarm.diagnose()}"
    log = (swarm.squid_dir / "access.log").read_text()
    assert "POST http://" in log and "/.well-known/webseed/pex" in log
    assert f"GET {swarm.url('p3')}/{swarm.files['p3']}" in log
    fetch = (
        "import hashlib,httpx,sys\n"
        "u=sys.argv[1] if len(sys.argv)>1 else None\n"
        f"r=httpx.get('http://{swarm.addr['mirror']}:{PORT}/{swarm.files['mirror']}',timeout=10)\n"
        "print(hashlib.sha256(r.content).hexdigest())\n"
    )
    via = swarm.in_ns("cenv", fetch, {"HTTP_PROXY": f"http://{swarm.addr['px']}:3128"})
    assert via.stdout.strip() == swarm.files["mirror"], via.stderr
    direct = swarm.in_ns("cenv", fetch.replace("timeout=10", "timeout=2"), {})
    assert direct.returncode != 0 and "Timeout" in direct.stderr  # nft drops direct traffic


def test_lan_multicast_discovery(swarm: Swarm) -> None:
    """lan1 and lan2 know nobody; multicast introduces them."""
    ok = _wait(
        lambda: (
            swarm.status("lan2").get("peer", "-") in swarm.status("lan1").get("known", [])
            and swarm.status("lan1").get("peer", "-") in swarm.status("lan2").get("known", [])
        ),
        30,
    )
    assert ok, swarm.diagnose()
    fetched = swarm.status("lan1").get("fetched", {})
    assert any(v for v in fetched.values())
