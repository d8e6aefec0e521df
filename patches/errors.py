"""Errors raised by :mod:`patches`; all are :class:`webseed.errors.WebseedError`."""

from __future__ import annotations

from webseed.errors import IntegrityError, WebseedError


class PatchError(WebseedError):
    """A patch cannot be created or applied."""


class PatchFormatError(PatchError):
    """The patch file is truncated, corrupted, of an unknown version or exceeds limits."""


class PatchBaseMismatchError(PatchError):
    """The patch was made for another base file (size or sha256 differ)."""


class PatchTargetMismatchError(PatchError, IntegrityError):
    """Applying the patch did not produce the target the patch promised."""


class ArchiveError(PatchError):
    """An archive cannot be expanded safely (hostile paths, bombs, malformed)."""


class RouteError(PatchError):
    """No route (patches or full download) reaches the wanted version."""
