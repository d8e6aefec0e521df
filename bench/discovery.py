"""Discovery benchmark.

1. Simulation (virtual time, the REAL store and exchange state machine, real
   signed announcements): a 1,000-peer swarm in steady state (each peer
   knows a random 64 others); a new peer joins knowing one bootstrap peer.
   Measured: virtual time until it knows 50/90/99% of the swarm, and the
   message/byte overhead per peer per minute. Signature checks are memoised
   across the simulated peers (each announcement is verified once per run
   instead of once per peer: same verdicts, 1000x less CPU).
2. Namespaces (root): throughput of a 64 MiB download from a real peer
   (Hypercorn) direct vs through Debian squid, with our httpx client and with
   curl (the reference tool), in the same run.

    .venv/bin/python -m bench.discovery [--peers 1000] [--interval 60] [--no-netns]
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import CACHE, table, write_results
from peer.discovery import store as store_mod
from peer.discovery.announce import Announcement, build, canonical, parse
from peer.discovery.exchange import Exchange
from peer.discovery.store import GossipStore, StoreLimits
from peer.incentives.identity import PeerIdentity

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _memoised_parse() -> Any:
    cache: dict[bytes, Announcement] = {}

    def fast(data: Any, now: float) -> Announcement:
        key = data if isinstance(data, bytes) else canonical(data)
        ann = cache.get(key)
        if ann is None:
            ann = cache[key] = parse(data, now)
        if not ann.fresh(now):
            raise store_mod.AnnouncementError("expired")
        return ann

    return fast


def simulate(
    n: int, interval: float, fanout: int, view: int, seed: int = 7, join_rounds: int = 0
) -> dict[str, Any]:
    """One run: warm swarm of ``n`` peers, one newcomer; returns the measurements."""
    rng = random.Random(seed)
    clock = Clock()
    store_mod.parse = _memoised_parse()  # type: ignore[attr-defined]
    idents = [PeerIdentity.generate() for _ in range(n + 1)]
    nets = rng.sample(range(1 << 16), n + 1)  # a distinct /24 per peer
    urls = [f"http://20.{k >> 8}.{k & 255}.7:8470" for k in nets]
    anns = [build(idents[i], [urls[i]], T0, lifetime=3600) for i in range(n + 1)]
    peers: list[Exchange] = []
    for i in range(n + 1):
        st = GossipStore(StoreLimits(), clock=clock, rng=random.Random(seed + i))
        st.set_own(anns[i])
        peers.append(Exchange(st, interval=interval, fanout=fanout))
    by_url = {urls[i]: i for i in range(n + 1)}
    for i in range(n):  # steady state: a random partial view of the others
        for j in rng.sample([k for k in range(n) if k != i], view):
            peers[i].store.add(anns[j])
    new = n
    peers[new].join_rounds = join_rounds
    peers[new].add_contact(urls[rng.randrange(n)], bootstrap=True)
    heap = [(T0 + rng.uniform(0, interval), i) for i in range(n)] + [(T0, new)]
    heapq.heapify(heap)
    marks: dict[int, float] = {}
    measure_from = T0 + 2 * interval
    msgs = nbytes = 0
    horizon = T0 + 20 * interval
    while heap:
        t, i = heapq.heappop(heap)
        if t > horizon:
            break
        clock.t = t
        me = peers[i]
        for url in me.due(t):
            j = by_url.get(url)
            if j is None:
                me.on_failure(url, t)
                continue
            body = me.payload()
            _, answer = peers[j].on_request(body, source=url)
            me.on_response(url, answer, t)
            if t >= measure_from and i != new:
                msgs += 2
                nbytes += len(body) + len(answer)
        known = len(peers[new].store)
        for pct in (50, 90, 99):
            if pct not in marks and known >= n * pct / 100:
                marks[pct] = t - T0
        heapq.heappush(heap, (me.next_wakeup(t) + rng.uniform(0, 1), i))
    minutes = (horizon - measure_from) / 60
    store_mod.parse = parse  # type: ignore[attr-defined]
    return {
        "peers": n,
        "interval_s": interval,
        "fanout": fanout,
        "initial_view": view,
        "join_rounds": join_rounds,
        "known_at_end": len(peers[new].store),
        "time_to_pct_s": {str(k): round(v, 1) for k, v in sorted(marks.items())},
        # Each exchange is one request + one answer; counted for both ends (sent + received).
        "messages_per_peer_per_min": round(2 * msgs / n / minutes, 2),
        "bytes_per_peer_per_min": round(2 * nbytes / n / minutes),
    }


# -- namespaces: proxy vs direct ------------------------------------------------------
def proxy_throughput(size: int = 64 << 20) -> dict[str, Any]:
    """Download ``size`` bytes from a real peer direct and via squid, in namespaces."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.discovery.netns import Topology, netns_unavailable

    why = netns_unavailable()
    squid = "/usr/sbin/squid"
    if why or not os.path.exists(squid):
        return {"skipped": why or "squid not installed"}
    CACHE.mkdir(parents=True, exist_ok=True)
    files = CACHE / "discovery-files"
    files.mkdir(exist_ok=True)
    blob = files / "blob"
    if not blob.exists() or blob.stat().st_size != size:
        blob.write_bytes(random.Random(1).randbytes(size))
    topo = Topology()
    sq = Path(tempfile.mkdtemp(prefix="wsd-squid-"))
    os.chmod(sq, 0o777)
    results: dict[str, Any] = {"bytes": size}
    try:
        pns, paddr = topo.add_node("peer")
        xns, xaddr = topo.add_node("px")
        cns, _ = topo.add_node("cli")
        (sq / "squid.conf").write_text(
            f"http_port {xaddr}:3128\nacl lan src 198.18.0.0/15\nhttp_access allow lan\n"
            f"http_access deny all\ncache deny all\npid_filename {sq}/squid.pid\n"
            f"access_log none\ncache_log {sq}/cache.log\ncoredump_dir {sq}\n"
            "shutdown_lifetime 1 seconds\ndns_nameservers 127.0.0.1\n"
        )
        topo.spawn(xns, [squid, "-N", "-f", str(sq / "squid.conf")])
        status = sq / "peer.json"
        topo.spawn(
            pns,
            [
                sys.executable,
                "-m",
                "tests.discovery.nodeproc",
                "--dir",
                str(files),
                "--status",
                str(status),
                "--host",
                paddr,
                "--port",
                "8470",
            ],
            cwd=str(Path(__file__).resolve().parent.parent),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if status.exists():
                break
            time.sleep(0.2)
        time.sleep(1.0)
        url = f"http://{paddr}:8470/blob"
        proxy = f"http://{xaddr}:3128"
        want = hashlib.sha256(blob.read_bytes()).hexdigest()
        code = (
            "import hashlib,httpx,sys,time\nh=hashlib.sha256();t=time.perf_counter()\n"
            "with httpx.Client(proxy=sys.argv[2] or None,trust_env=False,timeout=60) as c:\n"
            " with c.stream('GET',sys.argv[1]) as r:\n"
            "  [h.update(b) for b in r.iter_bytes(1<<20)]\n"
            "print(time.perf_counter()-t, h.hexdigest())\n"
        )
        for tool in ("httpx", "curl"):
            for via in ("direct", "squid"):
                best = None
                for _ in range(3):
                    if tool == "httpx":
                        cmd = [sys.executable, "-c", code, url, proxy if via == "squid" else ""]
                        out = subprocess.run(
                            ["ip", "netns", "exec", cns, *cmd],
                            capture_output=True,
                            text=True,
                            timeout=120,
                        )
                        secs, digest = out.stdout.split()
                        assert digest == want, "corrupt download"
                        elapsed = float(secs)
                    else:
                        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", url]
                        cmd += ["--noproxy", "*"] if via == "direct" else ["-x", proxy]
                        out = subprocess.run(
                            ["ip", "netns", "exec", cns, *cmd],
                            capture_output=True,
                            text=True,
                            timeout=120,
                        )
                        elapsed = float(out.stdout)
                    best = elapsed if best is None else min(best, elapsed)
                assert best is not None
                results[f"{tool}_{via}_MBps"] = round(size / best / 1e6, 1)
    finally:
        topo.close()
        import shutil

        shutil.rmtree(sq, ignore_errors=True)
    return results


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.discovery")
    ap.add_argument("--peers", type=int, default=1000)
    ap.add_argument("--no-netns", action="store_true")
    args = ap.parse_args(argv)
    runs = []
    for interval, fanout, join in ((60.0, 3, 0), (60.0, 3, 12), (60.0, 6, 0)):
        t = time.perf_counter()
        r = simulate(args.peers, interval, fanout, view=64, join_rounds=join)
        r["wall_s"] = round(time.perf_counter() - t, 1)
        runs.append(r)
    rows = [
        [
            r["interval_s"],
            r["fanout"],
            r["join_rounds"],
            r["time_to_pct_s"].get("50", "-"),
            r["time_to_pct_s"].get("90", "-"),
            r["time_to_pct_s"].get("99", "-"),
            r["known_at_end"],
            r["messages_per_peer_per_min"],
            r["bytes_per_peer_per_min"],
            r["wall_s"],
        ]
        for r in runs
    ]
    print(f"Simulated: a new peer joins a {args.peers}-peer swarm knowing one bootstrap peer")
    print(
        table(
            [
                "interval s",
                "fanout",
                "join rounds (10 s)",
                "50% s",
                "90% s",
                "99% s",
                "known after 20 min",
                "msgs/peer/min",
                "bytes/peer/min",
                "wall s",
            ],
            rows,
        )
    )
    proxy = {"skipped": "--no-netns"} if args.no_netns else proxy_throughput()
    if "skipped" in proxy:
        print(f"proxy vs direct: skipped ({proxy['skipped']})")
    else:
        print("64 MiB from a real peer (Hypercorn) in namespaces, best of 3, MB/s:")
        print(
            table(
                ["client", "direct", "via squid"],
                [
                    ["httpx (ours)", proxy["httpx_direct_MBps"], proxy["httpx_squid_MBps"]],
                    ["curl", proxy["curl_direct_MBps"], proxy["curl_squid_MBps"]],
                ],
            )
        )
    path = write_results("discovery", {"simulation": runs, "proxy": proxy})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
