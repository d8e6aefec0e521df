"""Helpers shared by the CLI commands: error reporting and exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from webseed.errors import (
    IntegrityError,
    KeyFileError,
    ManifestError,
    RepositoryIndexError,
    StorageError,
    UnsafePathError,
    WebseedError,
)

EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_SOURCES = 3
EXIT_IO = 4


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an error (see ``webseed --help``)."""
    if isinstance(exc, IntegrityError | ManifestError):
        return EXIT_INTEGRITY
    if isinstance(exc, KeyFileError | UnsafePathError):
        return EXIT_USAGE
    if isinstance(exc, RepositoryIndexError):
        return EXIT_INTEGRITY
    if isinstance(exc, StorageError | OSError):
        return EXIT_IO
    return EXIT_SOURCES


@contextmanager
def cli_errors(echo: Callable[[str], None] | None = None) -> Iterator[None]:
    """Turn webseed errors into one clear line on stderr and the documented exit code."""
    try:
        yield
    except WebseedError as exc:
        (echo or (lambda m: typer.echo(m, err=True)))(f"error: {exc}")
        raise typer.Exit(exit_code_for(exc)) from None
    except OSError as exc:
        typer.echo(f"error: {exc.filename or ''}: {exc.strerror}", err=True)
        raise typer.Exit(EXIT_IO) from None
