"""A peer's long-lived Ed25519 identity, created on first run, stored user-readable only.

The identity is the peer's name in every signed thing it produces: request
headers (:mod:`.auth`), receipts (:mod:`.receipts`), contribution summaries
(:mod:`.recognition`) and, later, peer-exchange self-announcements. To keep
these from being confused with one another, every signature is made over
``domain || 0x00 || message`` where ``domain`` names the kind of object
(``webseed-auth-v1``, ``webseed-receipt-v1``, ...); a signature made for one
domain never verifies in another. New uses pick a new domain string and reuse
:meth:`PeerIdentity.sign` / :func:`verify` unchanged.

A peer id is the raw 32-byte public key in unpadded base64url (43 characters).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from webseed.errors import SignatureError

from .errors import IdentityError

#: File name of the private key inside the identity directory.
KEY_FILE = "identity"
PEER_ID_LENGTH = 43


def b64e(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode unpadded base64url strictly; raise ValueError on anything else."""
    if not isinstance(text, str) or not text.isascii() or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64e(raw) != text:  # non-canonical encodings (stray bits) would alias
        raise ValueError("non-canonical base64url")
    return raw


def _signed_bytes(domain: str, message: bytes) -> bytes:
    if not domain or "\x00" in domain:
        raise ValueError("bad signature domain")
    return domain.encode("ascii") + b"\x00" + message


def public_key_of(peer_id: str) -> Ed25519PublicKey:
    """The public key named by ``peer_id``; :class:`SignatureError` if it is not one."""
    try:
        raw = b64d(peer_id)
    except ValueError as exc:
        raise SignatureError(f"malformed peer id {peer_id!r:.60}") from exc
    if len(raw) != 32:
        raise SignatureError("peer id is not a 32-byte Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(peer_id: str, domain: str, message: bytes, signature: bytes) -> None:
    """Check that ``peer_id`` signed ``message`` in ``domain``; raise :class:`SignatureError`."""
    key = public_key_of(peer_id)
    try:
        key.verify(signature, _signed_bytes(domain, message))
    except InvalidSignature as exc:
        raise SignatureError(f"bad {domain} signature by {peer_id[:12]}…") from exc


def is_peer_id(text: object) -> bool:
    """True if ``text`` is syntactically a peer id."""
    if not isinstance(text, str) or len(text) != PEER_ID_LENGTH:
        return False
    try:
        return len(b64d(text)) == 32
    except ValueError:
        return False


@dataclass(frozen=True)
class PeerIdentity:
    """An Ed25519 key pair; :attr:`peer_id` is its public name."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> PeerIdentity:
        """A fresh, random identity (not stored)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def peer_id(self) -> str:
        """The public key as unpadded base64url."""
        return b64e(self.public_bytes)

    def sign(self, domain: str, message: bytes) -> bytes:
        """Sign ``message`` for the given domain (see module docstring)."""
        return self.private_key.sign(_signed_bytes(domain, message))

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key (unencrypted: protected by file permissions)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def default_dir() -> Path:
    """``$XDG_CONFIG_HOME/webseed`` (``~/.config/webseed`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "webseed"


def load(path: Path) -> PeerIdentity:
    """Read an identity key file; refuse it if group/others can read it (like ssh)."""
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read identity {path}: {exc}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"identity {path} is accessible by others; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"identity {path} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"identity {path} is not an Ed25519 key")
    return PeerIdentity(key)


def load_or_create(directory: Path | None = None) -> PeerIdentity:
    """The peer's identity from ``directory`` (default :func:`default_dir`), made on first run.

    The key is written to a temporary file created with mode 0600 and then
    hard-linked into place, so a crash never leaves a half-written key and two
    processes starting at once end up with the same identity.
    """
    directory = directory if directory is not None else default_dir()
    path = directory / KEY_FILE
    if path.exists():
        return load(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = PeerIdentity.generate()
    tmp = directory / f".{KEY_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(identity.private_pem())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load(path)  # another process won the race: use its key
    finally:
        tmp.unlink(missing_ok=True)
    return identity
