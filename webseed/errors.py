"""The errors webseed raises. Every failure the library reports is one of these."""

from __future__ import annotations


class WebseedError(Exception):
    """Base class of every error webseed raises on purpose."""


class IntegrityError(WebseedError):
    """Data does not match what the publisher signed (digest, size, signature)."""


class ManifestError(WebseedError):
    """A manifest is malformed, truncated, non-canonical or violates policy."""


class WeakHashError(ManifestError):
    """A digest uses an algorithm that the hash policy refuses or does not know."""


class UnsafePathError(WebseedError):
    """A repository path would escape the repository or is otherwise unsafe."""


class RepositoryIndexError(WebseedError):
    """The signed repository index cannot be loaded, verified or trusted."""


class KeyFileError(WebseedError):
    """A key file is missing, malformed, of the wrong kind, or revoked."""


class SignatureError(IntegrityError):
    """A signature is missing, malformed, made by an untrusted key or does not verify."""


class StorageError(WebseedError):
    """The partial-artifact store is inconsistent or cannot be written."""
