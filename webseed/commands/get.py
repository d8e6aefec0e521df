"""``webseed get``: download one artifact from peers and mirrors, every chunk verified.

Exit codes: 0 done (file complete and verified); 1 the index, a signature or the
manifest failed verification; 2 usage (no source, bad key file, unsafe path);
3 the sources could not deliver (unreachable, all banned, chunks nobody holds);
4 local I/O error. Interrupted downloads resume from ``OUT.part``.

Requests to peers are signed with the peer identity (``--identity``, the
default; the same key ``webseed serve`` uses with the same ``--state-dir``), so
peers credit the downloader; ``--anonymous`` sends none. ``--discover`` (the
default) lets peers found by peer exchange join the download and remembers the
peers that served it (``--state-dir``, else ``$XDG_STATE_HOME/webseed/discovery``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from webseed.client import get_artifact
from webseed.commands._common import cli_errors, exit_code_for
from webseed.errors import WebseedError


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def get(
    path: Annotated[str, typer.Argument(help="Repository path of the artifact.")],
    root_key: Annotated[
        Path, typer.Option("--root-key", help="Pinned publisher public key (.pub).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the file.")],
    peers: Annotated[
        list[str] | None, typer.Option("--peer", help="Base URL of a peer (repeatable).")
    ] = None,
    mirrors: Annotated[
        list[str] | None, typer.Option("--mirror", help="Base URL of a mirror (repeatable).")
    ] = None,
    index: Annotated[
        str | None,
        typer.Option("--index", help="Where to get the signed index (default: first source)."),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Trust state (index versions seen).")
    ] = None,
    give_up_after: Annotated[
        float, typer.Option("--give-up-after", help="Seconds without progress before failing.")
    ] = 30.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Scheduler random seed.")] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from", help="An earlier version you have: update it with patches."),
    ] = None,
    index_mirrors: Annotated[
        int, typer.Option("--index-mirrors", help="How many of the index's mirrors to use.")
    ] = 4,
    client_ip: Annotated[
        str | None, typer.Option("--client-ip", help="Your public IP, to rank mirrors by GeoIP.")
    ] = None,
    identity: Annotated[
        bool,
        typer.Option(
            "--identity/--anonymous",
            help="Sign requests to peers with the peer identity (key in --state-dir if "
            "given, else $XDG_CONFIG_HOME/webseed; made on first run) so they credit you.",
        ),
    ] = True,
    discover: Annotated[
        bool,
        typer.Option(
            "--discover/--no-discover",
            help="Add peers found by peer exchange and the peers that served your last "
            "downloads; remember who served this one.",
        ),
    ] = True,
    bootstrap: Annotated[
        list[str] | None,
        typer.Option("--bootstrap", help="A peer to ask for peer-exchange lists (repeatable)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Download PATH from the given peers and mirrors, verifying every chunk.

    Exit codes: 0 ok, 1 verification failed, 2 usage, 3 sources failed, 4 local I/O.
    """
    if not peers and not mirrors and not index:
        typer.echo("error: give at least one --peer, --mirror or --index", err=True)
        raise typer.Exit(2)
    progress: Any = None
    on_progress = None
    if not quiet and not as_json and sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )

        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        )
        task = progress.add_task(path, total=None)

        def on_progress(done: int, count: int, nbytes: int) -> None:
            progress.update(task, completed=nbytes)

    try:
        peer_identity = None
        if identity:
            from peer.incentives.identity import default_dir, load_or_create

            peer_identity = load_or_create(state_dir if state_dir is not None else default_dir())
        discovery_dir = None
        if discover:
            from peer.discovery.bootstrap import default_state_dir

            discovery_dir = state_dir if state_dir is not None else default_state_dir()
        if progress is not None:
            progress.start()
        report = asyncio.run(
            get_artifact(
                path,
                root_key=root_key,
                out=output,
                peers=peers or [],
                mirrors=mirrors or [],
                index_url=index,
                state_dir=state_dir,
                seed=seed,
                give_up_after=give_up_after,
                on_progress=on_progress,
                index_mirrors=index_mirrors,
                client_ip=client_ip,
                from_file=from_file,
                identity=peer_identity,
                discover=discover,
                bootstrap=bootstrap or [],
                discovery_dir=discovery_dir,
            )
        )
    except (WebseedError, OSError) as exc:
        if progress is not None:
            progress.stop()
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc), "exit": exit_code_for(exc)}))
            raise typer.Exit(exit_code_for(exc)) from None
        with cli_errors():
            raise
        return  # pragma: no cover
    if progress is not None:
        progress.stop()
    if as_json:
        typer.echo(json.dumps({"ok": True, **report.to_dict()}, sort_keys=True))
        return
    if quiet:
        return
    typer.echo(
        f"{report.path}: {_human(report.size)} in {report.elapsed:.2f} s "
        f"({_human(report.throughput)}/s), {report.resumed_chunks} chunks resumed"
    )
    patch = report.notes.get("patch")
    if patch:
        typer.echo(
            f"  updated with {len(patch['chain'])} patch(es): "
            f"fetched {_human(patch['patch_bytes'])}"
            f" instead of {_human(patch['full_bytes'])} ({patch['saved_pct']}% saved)"
        )
    for s in report.sources:
        note = f"  BANNED: {s.banned}" if s.banned else ""
        typer.echo(f"  {s.kind:6} {s.url}  {_human(s.bytes)} in {s.requests} requests{note}")
    for skipped in report.notes.get("index_mirrors", {}).get("skipped", []):
        typer.echo(f"  skipped {skipped['url']}: {skipped['why']}")


def register(app: typer.Typer) -> None:
    """Add ``get`` to the CLI."""
    app.command("get")(get)
