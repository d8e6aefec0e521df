"""Publisher key files: Ed25519 private keys (PKCS#8 PEM, user-only) and ``.pub`` files.

A private key may come from a file, from an environment variable (``env:NAME``)
or from an inherited file descriptor (``fd:N``), so a CI job can sign without
ever writing the key to disk in clear. An encrypted PEM is opened with the
passphrase in ``WEBSEED_KEY_PASSPHRASE``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from webseed.errors import KeyFileError

PASSPHRASE_ENV = "WEBSEED_KEY_PASSPHRASE"
#: A key file larger than this is refused unread.
MAX_KEY_BYTES = 64 * 1024


@dataclass(frozen=True)
class KeyPairFiles:
    """Where :func:`generate_keypair` wrote a key pair."""

    private: Path
    public: Path
    keyid: str


def key_id(public: Ed25519PublicKey) -> str:
    """A short stable name for a public key: hex SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a public key."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def generate_keypair(
    out_dir: str | os.PathLike[str], name: str = "webseed", *, passphrase: bytes | None = None
) -> KeyPairFiles:
    """Create ``out_dir/NAME.key`` (mode 0600) and ``out_dir/NAME.pub``; never overwrite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # Created 0600 from the start: no window in which another user can read it.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(public_pem(key.public_key()))
    return KeyPairFiles(private_path, public_path, key_id(key.public_key()))


def _read_source(spec: str) -> bytes:
    if spec.startswith("env:"):
        value = os.environ.get(spec[4:])
        if not value:
            raise KeyFileError(f"environment variable {spec[4:]} is not set or empty")
        return value.encode()
    if spec.startswith("fd:"):
        try:
            fd = int(spec[3:])
        except ValueError:
            raise KeyFileError(f"bad file descriptor in {spec!r}") from None
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(MAX_KEY_BYTES + 1)
        except OSError as exc:
            raise KeyFileError(f"cannot read key from {spec}: {exc}") from None
    path = Path(spec)
    try:
        if path.stat().st_size > MAX_KEY_BYTES:
            raise KeyFileError(f"{path} is too large to be a key file")
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None


def load_private_key(spec: str) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a path, ``env:NAME`` or ``fd:N``."""
    data = _read_source(spec)
    passphrase = os.environ.get(PASSPHRASE_ENV)
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase.encode() if passphrase else None
        )
    except TypeError:
        raise KeyFileError(f"{spec}: key is encrypted; set {PASSPHRASE_ENV}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{spec}: not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{spec}: not an Ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a ``.pub`` PEM file."""
    data = _read_source(os.fspath(path))
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path}: not a readable public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key
