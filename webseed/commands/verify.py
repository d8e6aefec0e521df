"""``webseed verify``: check a repository's signed index and its artifacts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from webseed.commands._common import EXIT_INTEGRITY, cli_errors
from webseed.errors import WebseedError
from webseed.index.client import open_index, open_index_once
from webseed.integrity.alerts import AlertSink, TamperAlert
from webseed.integrity.keys import load_public_key
from webseed.integrity.verify import verify_file
from webseed.paths import resolve_under

RootKeyOpt = Annotated[Path, typer.Option("--root-key", help="Pinned publisher public key (.pub).")]


def verify(
    repo_dir: Annotated[Path, typer.Argument(help="Repository directory to check.")],
    root_key: RootKeyOpt,
    paths: Annotated[list[str] | None, typer.Argument(help="Only these artifacts.")] = None,
    all_digests: Annotated[
        bool, typer.Option("--all-digests", help="Also check every whole-file digest.")
    ] = False,
    alerts: Annotated[
        Path | None, typer.Option("--alerts", help="Append tamper alerts as JSON lines here.")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Remember index versions here (rollback checks)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check the index signatures and expiry, then every artifact (or PATHs) against its manifest.

    Prints what failed and exits 1 on any failure.
    """
    stream = open(alerts, "a") if alerts else None  # noqa: SIM115
    sink = AlertSink(stream)
    failures: list[str] = []
    checked = 0
    with cli_errors():
        key = load_public_key(root_key)
        index = (
            open_index(str(repo_dir), key, state_dir=state_dir)
            if state_dir is not None
            else open_index_once(str(repo_dir), key)
        )
        for path in paths or index.paths():
            try:
                entry = index.lookup(path)
                manifest = index.fetch_manifest(entry)
                result = verify_file(
                    resolve_under(repo_dir, path), manifest, all_digests=all_digests, sink=sink
                )
            except WebseedError as exc:
                sink.emit(TamperAlert("index", path, str(exc)))
                failures.append(f"{path}: {exc}")
                continue
            checked += 1
            failures.extend(f"{path}: {a.message}" for a in result.alerts)
    if stream:
        stream.close()
    if as_json:
        report = {
            "index_version": index.version,
            "checked": checked,
            "ok": not failures,
            "alerts": [json.loads(a.to_json()) for a in sink.alerts],
        }
        typer.echo(json.dumps(report, sort_keys=True))
    else:
        for line in failures:
            typer.echo(f"FAILED {line}", err=True)
        status = "ok" if not failures else f"{len(failures)} failure(s)"
        typer.echo(f"index version {index.version}: {checked} artifact(s) checked, {status}")
    sys.stdout.flush()
    if failures:
        raise typer.Exit(EXIT_INTEGRITY)


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the CLI."""
    app.command()(verify)
