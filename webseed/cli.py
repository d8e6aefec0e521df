"""The ``webseed`` command line: publish, verify, serve, get, diff, patch and more.

Exit codes: 0 success; 1 verification or integrity failure; 2 usage error;
3 network or source failure (nothing could serve the data); 4 local I/O error.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from webseed import __version__
from webseed import commands as _commands

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.command()
def version() -> None:
    """Print the webseed version."""
    typer.echo(__version__)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        module.register(app)


_register_all()


def main() -> None:
    """Entry point of the ``webseed`` script."""
    app()


if __name__ == "__main__":
    main()
