"""``webseed get``: download one artifact from peers and mirrors, every chunk verified.

Exit codes: 0 done (file complete and verified); 1 the index, a signature or the
manifest failed verification; 2 usage (no source, bad key file, unsafe path);
3 the sources could not deliver (unreachable, all banned, chunks nobody holds);
4 local I/O error. Interrupted downloads resume from ``OUT.part``.
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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Download PATH from the given peers and mirrors, verifying every chunk.

    Exit codes: 0 ok, 1 verification failed, 2 usage, 3 sources failed, 4 local I/O.
    """
    if not peers and not mirrors:
        typer.echo("error: give at least one --peer or --mirror", err=True)
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
    for s in report.sources:
        note = f"  BANNED: {s.banned}" if s.banned else ""
        typer.echo(f"  {s.kind:6} {s.url}  {_human(s.bytes)} in {s.requests} requests{note}")


def register(app: typer.Typer) -> None:
    """Add ``get`` to the CLI."""
    app.command("get")(get)
