"""``webseed diff`` and ``webseed patch``: make and apply differential updates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from webseed.errors import WebseedError


def register(app: typer.Typer) -> None:
    """Add the ``diff`` and ``patch`` commands."""

    @app.command("diff")
    def diff(
        old: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Old version.")],
        new: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="New version.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="Patch to write.")],
    ) -> None:
        """Create a patch that turns OLD into NEW (verified by applying it)."""
        from patches.create import create_patch

        try:
            info = create_patch(old, new, output)
        except OSError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(4) from exc
        size = new.stat().st_size
        saved = 100.0 * (1 - info.size / size) if size else 0.0
        typer.echo(f"{output}: {info.size} bytes ({info.transform}), {saved:.1f}% smaller than NEW")

    @app.command("patch")
    def patch(
        old: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Old version.")],
        patch_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Patch.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="New version to write.")],
    ) -> None:
        """Apply PATCH to OLD; OUTPUT appears only if it matches the patch's target digest."""
        from patches.apply import apply_patch

        try:
            apply_patch(old, patch_file, output)
        except WebseedError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        except OSError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(4) from exc
        typer.echo(f"{output}: verified")
