"""Errors of the incentives layer, all within webseed's :class:`WebseedError` hierarchy."""

from __future__ import annotations

from webseed.errors import KeyFileError, SignatureError, StorageError


class AuthError(SignatureError):
    """A peer request's identity header is missing, malformed, stale, replayed or forged."""


class ReceiptError(SignatureError):
    """A receipt is malformed, forged, expired, replayed, self-issued or implausible."""


class IdentityError(KeyFileError):
    """The peer identity key file is unreadable, malformed or has unsafe permissions."""


class LedgerError(StorageError):
    """The contribution ledger cannot be written."""
