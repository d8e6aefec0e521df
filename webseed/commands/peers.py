"""``webseed peers``: discover peers by exchange, list remembered peers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from peer.discovery.bootstrap import bootstrap_urls, default_state_dir, load_last_served
from peer.discovery.client import Gossiper, make_client
from peer.discovery.exchange import Exchange
from peer.discovery.node import download_urls
from peer.discovery.store import GossipStore
from webseed.commands._common import EXIT_SOURCES, EXIT_USAGE


async def _discover(urls: list[str], proxy: str | None, rounds: int) -> Gossiper:
    store = GossipStore(clock=time.time)
    exchange = Exchange(store, interval=0.0, fanout=8)
    for url in urls:
        exchange.add_contact(url, bootstrap=True)
    async with make_client(proxy) as client:
        gossiper = Gossiper(exchange, client)
        for _ in range(rounds):
            if not await gossiper.round():
                break
    return gossiper


def register(app: typer.Typer) -> None:
    """Add the ``peers`` command group."""
    peers = typer.Typer(no_args_is_help=True, help="Find peers without a tracker.")
    app.add_typer(peers, name="peers")

    @peers.command("discover")
    def discover(
        urls: Annotated[list[str], typer.Argument(help="Peer base URLs to start from.")],
        proxy: Annotated[
            str | None, typer.Option("--proxy", help="HTTP proxy (else HTTP(S)_PROXY).")
        ] = None,
        rounds: Annotated[int, typer.Option("--rounds", min=1, max=100)] = 3,
        state_dir: Annotated[Path | None, typer.Option("--state-dir")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Exchange announcements with peers (and remembered ones); print who is out there."""
        start = bootstrap_urls(named=urls, state_dir=state_dir or default_state_dir())
        if not start:
            typer.echo("error: no valid peer URL", err=True)
            raise typer.Exit(EXIT_USAGE)
        gossiper = asyncio.run(_discover(start, proxy, rounds))
        found = gossiper.exchange.store.all()
        rows: list[dict[str, Any]] = [
            {
                "peer": a.peer,
                "urls": download_urls(a),
                "outbound_only": a.outbound_only,
                "have": list(a.have),
                "expires": a.expires,
            }
            for a in sorted(found, key=lambda a: a.peer)
        ]
        if as_json:
            typer.echo(json.dumps({"peers": rows, "errors": gossiper.errors}, indent=1))
        else:
            for row in rows:
                flag = " (outbound-only)" if row["outbound_only"] else ""
                typer.echo(f"{row['peer']}  {' '.join(row['urls'])}{flag}  {len(row['have'])} held")
            for err in gossiper.errors:
                typer.echo(f"warning: {err}", err=True)
        if not rows:
            raise typer.Exit(EXIT_SOURCES)

    @peers.command("remembered")
    def remembered(state_dir: Annotated[Path | None, typer.Option("--state-dir")] = None) -> None:
        """The peers that served recent downloads (bootstrap contacts)."""
        for p in load_last_served(state_dir or default_state_dir()):
            typer.echo(f"{p['url']}  {p['bytes']} bytes  last {int(p['last'])}")
