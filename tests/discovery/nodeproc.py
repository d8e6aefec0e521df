"""A real discovery peer process for the loopback and namespace tests.

Serves the files of ``--dir`` (each named by the sha256 of its content, so
``have`` lists them and fetchers can verify what they get) with Starlette's
StaticFiles behind :class:`peer.discovery.asgi.DiscoveryApp`, gossips, and
writes its view to ``--status`` (JSON) after every check. With ``--fetch``
it downloads every file every discovered peer announces (directly or via its
relay) and records whether the sha256 matched. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from peer.discovery.lan import LanDiscovery
from peer.discovery.node import DiscoveryNode, NodeConfig, download_urls
from peer.incentives.identity import PeerIdentity


async def fetch_all(node: DiscoveryNode, fetched: dict[str, bool], dest: Path) -> None:
    for ann in node.store.all():
        for digest in ann.have:
            key = f"{ann.peer}/{digest}"
            if fetched.get(key):
                continue
            for base in download_urls(ann):
                try:
                    r = await node.client.get(f"{base}/{digest}", timeout=20)
                except Exception:
                    continue
                ok = r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == digest
                fetched[key] = ok
                if ok:
                    (dest / digest).write_bytes(r.content)
                    break


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--relay", action="append", default=[])
    ap.add_argument("--outbound-only", action="store_true")
    ap.add_argument("--proxy", default=None)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--fetch", action="store_true")
    ap.add_argument("--fetch-dir", default="")
    ap.add_argument("--lan", default="", help="interface address: enable LAN multicast")
    args = ap.parse_args()

    files = Path(args.dir)
    have = sorted(p.name for p in files.iterdir() if len(p.name) == 64)
    config = NodeConfig(
        host=args.host,
        port=args.port,
        outbound_only=args.outbound_only,
        relays=args.relay,
        bootstrap=args.bootstrap,
        have=have,
        interval=args.interval,
        fanout=3,
        proxy=args.proxy,
    )
    app = Starlette(routes=[Mount("/", StaticFiles(directory=files))])
    node = DiscoveryNode(PeerIdentity.generate(), config, app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    fetched: dict[str, bool] = {}
    dest = Path(args.fetch_dir or args.dir)

    async def report() -> None:
        for _ in range(100_000):
            if args.fetch:
                await fetch_all(node, fetched, dest)
            status = {
                "peer": node.identity.peer_id,
                "urls": node.urls,
                "known": sorted(a.peer for a in node.store.all()),
                "fetched": fetched,
                "errors": node.gossiper.errors[-5:],
                "relayed": node.hub.relayed_bytes if node.hub else 0,
                "served_via_relay": sum(w.served_bytes for w in node.workers),
                "time": time.time(),
                # For the test's failure messages: who we ask, the relay sessions.
                "contacts": {
                    c.url: [c.successes, c.failures, round(c.retry_at - time.time(), 1)]
                    for c in node.exchange.contacts.values()
                },
                "hub": node.hub.sessions() if node.hub else {},
                "workers": [w.state() for w in node.workers],
            }
            tmp = args.status + ".tmp"
            Path(tmp).write_text(json.dumps(status))
            os.replace(tmp, args.status)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
                return
            except TimeoutError:
                continue

    reporter = asyncio.ensure_future(report())
    lan_task = None
    if args.lan:
        lan = LanDiscovery(
            node.store,
            interface=args.lan,
            on_peer=lambda a: [node.exchange.add_contact(u) for u in a.contact_urls[:1]],
        )
        await lan.start()

        async def lan_loop() -> None:
            await asyncio.sleep(0.5)  # until our own announcement exists
            await lan.run(stop, interval=1.0)

        lan_task = asyncio.ensure_future(lan_loop())
    await node.run(stop)
    if lan_task is not None:
        await lan_task
        lan.close()
    await reporter


if __name__ == "__main__":
    asyncio.run(main())
