"""``webseed stats``: seeding statistics, level and badges of this peer."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from peer.incentives.errors import IdentityError
from peer.incentives.identity import default_dir
from peer.incentives.stats import default_state_dir, render, report


def register(app: typer.Typer) -> None:
    """Add the ``stats`` command."""

    @app.command()
    def stats(
        state_dir: Annotated[
            Path | None, typer.Option("--state-dir", help="Peer state directory.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Show bytes served, seeding time, level and badges (from the local state)."""
        directory = state_dir or default_state_dir()
        identity_dir = state_dir if state_dir is not None else default_dir()
        try:
            data = report(directory, time.time(), identity_dir=identity_dir)
        except IdentityError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(4) from exc
        typer.echo(json.dumps(data, indent=1, sort_keys=True) if as_json else render(data))
