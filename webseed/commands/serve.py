"""``webseed serve REPO_DIR``: run a peer (HTTP/1.1 + HTTP/2 range server) for a repository."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from webseed.commands._common import EXIT_USAGE

if TYPE_CHECKING:
    from peer.discovery.node import DiscoveryNode
    from webseed.server.incentives import PeerIncentives


def _parse_rate(text: str) -> int:
    """``1000000``, ``500K``, ``20M``, ``1G`` (bytes per second, powers of 1024) -> int."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    t = text.strip().upper().removesuffix("B/S").removesuffix("/S").removesuffix("B")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = float(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise typer.BadParameter(f"not a rate: {text!r}") from None
    if value < 0:
        raise typer.BadParameter("rate must be >= 0")
    return int(value * units[unit])


def _open_incentives(state_dir: Path | None) -> PeerIncentives:
    from peer.incentives.errors import IdentityError
    from webseed.server.incentives import PeerIncentives

    try:
        return PeerIncentives.open(state_dir)
    except IdentityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _discovery_node(
    incentives: PeerIncentives,
    repo_dir: Path,
    host: str,
    bootstrap: list[str],
    public_urls: list[str],
    interval: float,
    proxy: str | None,
) -> DiscoveryNode:
    """Peer exchange beside the server: announcements signed with the peer's identity.

    The node's gossip store answers ``/.well-known/webseed/pex``; its announcement
    lists the manifest digests this peer serves (at most what the format allows).
    """
    from peer.discovery.announce import MAX_HAVE
    from peer.discovery.node import DiscoveryNode, NodeConfig

    manifests = repo_dir / ".well-known" / "webseed" / "manifests"
    have = sorted(p.stem for p in manifests.glob("*.json"))[:MAX_HAVE]
    config = NodeConfig(
        host=host, public_urls=public_urls, bootstrap=bootstrap, have=have,
        interval=interval, proxy=proxy,
    )  # fmt: skip
    return DiscoveryNode(incentives.identity, config)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""

    @app.command()
    def serve(
        repo_dir: Annotated[Path, typer.Argument(help="Published repository directory to serve.")],
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option(help="TCP port; 0 picks a free one (the URL is printed).")
        ] = 8470,
        tls_cert: Annotated[
            Path | None, typer.Option(help="TLS certificate (PEM) for HTTPS + h2.")
        ] = None,
        tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
        store: Annotated[
            Path | None, typer.Option(help="Store of partial artifacts to serve.")
        ] = None,
        slots: Annotated[int, typer.Option(help="Concurrent upload slots (0 = unlimited).")] = 0,
        rate: Annotated[
            str, typer.Option(help="Upload rate limit in bytes/s, e.g. 20M (0 = none).")
        ] = "0",
        log_json: Annotated[
            bool, typer.Option("--log-json", help="One JSON access record per request on stderr.")
        ] = False,
        upload_policy: Annotated[
            str,
            typer.Option(
                help="Who gets a free upload slot first: 'incentives' (contributors, "
                "PropShare + optimistic slots) or 'fifo' (arrival order)."
            ),
        ] = "incentives",
        state_dir: Annotated[
            Path | None,
            typer.Option(
                help="Peer state (ledger, recognition, receipts; and the identity key if "
                "given). Default: $XDG_STATE_HOME/webseed, key in $XDG_CONFIG_HOME/webseed."
            ),
        ] = None,
        bootstrap: Annotated[
            list[str] | None,
            typer.Option("--bootstrap", help="A peer to exchange announcements with (repeatable)."),
        ] = None,
        discover: Annotated[
            bool,
            typer.Option(
                "--discover/--no-discover",
                help="Take part in peer exchange (on with --bootstrap).",
            ),
        ] = False,
        public_url: Annotated[
            list[str] | None,
            typer.Option("--public-url", help="URL others reach this peer at (default: bound)."),
        ] = None,
        gossip_interval: Annotated[
            float, typer.Option(help="Seconds between peer-exchange rounds.")
        ] = 60.0,
        proxy: Annotated[
            str | None, typer.Option(help="HTTP(S) proxy for peer exchange (else the env's).")
        ] = None,
    ) -> None:
        """Serve REPO_DIR to peers and plain HTTP clients until SIGTERM/SIGINT."""
        from webseed.server.app import create_app
        from webseed.server.capacity import FifoPolicy
        from webseed.server.standalone import ServerOptions
        from webseed.server.standalone import serve as run

        if not repo_dir.is_dir():
            typer.echo(f"error: {repo_dir} is not a directory", err=True)
            raise typer.Exit(EXIT_USAGE)
        if (tls_cert is None) != (tls_key is None):
            typer.echo("error: --tls-cert and --tls-key go together", err=True)
            raise typer.Exit(EXIT_USAGE)
        if slots < 0:
            typer.echo("error: --slots must be >= 0", err=True)
            raise typer.Exit(EXIT_USAGE)
        if log_json:
            from webseed.server.metrics import configure_json_logs

            configure_json_logs(sys.stderr)
        if upload_policy not in ("incentives", "fifo"):
            typer.echo("error: --upload-policy is 'incentives' or 'fifo'", err=True)
            raise typer.Exit(EXIT_USAGE)
        incentives = _open_incentives(state_dir)
        node = None
        if discover or bootstrap:
            node = _discovery_node(
                incentives, repo_dir, host, bootstrap or [], public_url or [], gossip_interval,
                proxy,
            )  # fmt: skip
        app = create_app(
            repo_dir,
            store=store,
            slots=slots,
            rate=_parse_rate(rate),
            policy=FifoPolicy() if upload_policy == "fifo" else None,
            incentives=incentives,
            pex=node.store if node is not None else None,
        )
        if node is not None:
            node.app.inner = app
        opts = ServerOptions(
            host=host,
            port=port,
            certfile=str(tls_cert) if tls_cert else None,
            keyfile=str(tls_key) if tls_key else None,
        )

        def ready(url: str) -> None:
            # One line, flushed: scripts and tests read the bound URL from it.
            print(f"webseed: serving {repo_dir} at {url}", flush=True)
            print(f"webseed: peer id {incentives.peer_id}", file=sys.stderr, flush=True)
            if node is not None:
                node.urls = node.config.public_urls or [url]
                node.announce(time.time())

        async def main() -> None:
            if node is None:
                await run(app, opts, ready=ready)
                return
            stop = asyncio.Event()
            gossip = asyncio.create_task(node.gossiper.run(stop))
            try:
                await run(node.app, opts, ready=ready, stop=stop)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(gossip, 5.0)
                await node.client.aclose()

        try:
            asyncio.run(main())
        except OSError as exc:
            typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        finally:
            app.state.peer.repo.close()
            incentives.close()  # the lifespan saved already; this is idempotent
        print("webseed: stopped", file=sys.stderr, flush=True)
