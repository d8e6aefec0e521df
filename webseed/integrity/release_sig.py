"""Developers' own release signatures (minisign / signify-style Ed25519), and their key store.

Only the prehashed ``ED`` form is accepted: the signature covers BLAKE2b-512 of
the file, so verifying streams the file instead of reading it into memory (the
legacy ``Ed`` form signs the raw file). Keys live in a small directory:
``trusted/<KEYID>.pub`` (minisign public key files) and ``revoked`` (one key id
per line). The cryptography is py-minisign's and `cryptography`'s.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

import minisign

from webseed.errors import KeyFileError, SignatureError

#: A signature or key file larger than this is refused unread.
MAX_FILE = 16 * 1024


def _read_small(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE:
            raise KeyFileError(f"{path}: too large to be a {what}")
        return path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_signature(path: str | os.PathLike[str]) -> minisign.Signature:
    """Parse a ``.minisig`` file; refuse the legacy (non-prehashed) form."""
    data = _read_small(Path(path), "signature")
    try:
        sig = minisign.Signature.from_bytes(data)
    except minisign.Error as exc:
        raise SignatureError(f"{path}: malformed minisign signature ({exc})") from None
    if not sig.is_prehashed():
        raise SignatureError(f"{path}: legacy (non-prehashed) minisign signature refused")
    return sig


def load_minisign_key(path: str | os.PathLike[str]) -> minisign.PublicKey:
    """Parse a minisign public key file (``untrusted comment`` line + base64 line)."""
    data = _read_small(Path(path), "public key")
    try:
        return minisign.PublicKey.from_bytes(data)
    except minisign.Error as exc:
        raise KeyFileError(f"{path}: malformed minisign public key ({exc})") from None


def _id_from_base64_line(line: bytes) -> str:
    # Both formats start with a 2-byte algorithm and an 8-byte little-endian key id.
    raw = base64.b64decode(line.strip())[2:10]
    # As the minisign CLI prints it: "%" PRIX64 of the little-endian id, no zero padding.
    return format(int.from_bytes(raw, "little"), "X")


def minisign_key_id(key: minisign.PublicKey) -> str:
    """The key id as minisign prints it (upper-case hex)."""
    return _id_from_base64_line(key.to_base64())


def signature_key_id(sig: minisign.Signature) -> str:
    """The key id a signature claims to be made by."""
    return _id_from_base64_line(bytes(sig).splitlines()[1])


@dataclass(frozen=True)
class SignatureCheck:
    """A verified release signature."""

    key_id: str
    trusted_comment: str


def verify_release(
    file: str | os.PathLike[str], signature: minisign.Signature, key: minisign.PublicKey
) -> SignatureCheck:
    """Verify ``signature`` over ``file`` with ``key``; raise :class:`SignatureError` if bad."""
    try:
        with open(file, "rb") as f:
            key.verify(f, signature)
    except minisign.VerifyError as exc:
        raise SignatureError(f"{file}: release signature does not verify ({exc})") from None
    except OSError as exc:
        raise SignatureError(f"{file}: cannot read ({exc.strerror})") from None
    return SignatureCheck(minisign_key_id(key), signature.trusted_comment)


class KeyStore:
    """Trusted developer keys in a directory, with revocation."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.trusted_dir = self.root / "trusted"
        self.revoked_file = self.root / "revoked"

    def add(self, pubfile: str | os.PathLike[str]) -> str:
        """Trust the minisign public key in ``pubfile``; returns its key id."""
        key = load_minisign_key(pubfile)
        kid = minisign_key_id(key)
        if kid in self.revoked():
            raise KeyFileError(f"key {kid} is revoked; refusing to trust it again")
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        (self.trusted_dir / f"{kid}.pub").write_bytes(Path(pubfile).read_bytes())
        return kid

    def generate(self, out_dir: str | os.PathLike[str], name: str = "release") -> str:
        """Create an unencrypted minisign key pair ``NAME.key``/``NAME.pub`` and trust it."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        secret_path, public_path = out / f"{name}.key", out / f"{name}.pub"
        if secret_path.exists() or public_path.exists():
            raise KeyFileError(f"{secret_path} or {public_path} exists; refusing to overwrite")
        pair = minisign.KeyPair.generate()
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(pair.secret_key))
        public_path.write_bytes(bytes(pair.public_key))
        return self.add(public_path)

    def list(self) -> list[str]:
        """Key ids currently trusted (revoked ones excluded)."""
        if not self.trusted_dir.is_dir():
            return []
        revoked = self.revoked()
        return sorted(p.stem for p in self.trusted_dir.glob("*.pub") if p.stem not in revoked)

    def revoked(self) -> set[str]:
        """Key ids that were revoked."""
        if not self.revoked_file.exists():
            return set()
        return {line.strip().upper() for line in self.revoked_file.read_text().split() if line}

    def revoke(self, kid: str) -> None:
        """Revoke a key id: signatures by it are refused from now on."""
        kid = kid.strip().upper()
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.revoked_file, "a") as f:
            f.write(kid + "\n")
        (self.trusted_dir / f"{kid}.pub").unlink(missing_ok=True)

    def verify(
        self, file: str | os.PathLike[str], sigfile: str | os.PathLike[str]
    ) -> SignatureCheck:
        """Verify ``sigfile`` over ``file`` with whichever trusted key it names."""
        sig = load_signature(sigfile)
        kid = signature_key_id(sig)
        if kid in self.revoked():
            raise SignatureError(f"{file}: signed by revoked key {kid}")
        keyfile = self.trusted_dir / f"{kid}.pub"
        if not keyfile.exists():
            raise SignatureError(f"{file}: signed by unknown key {kid}")
        return verify_release(file, sig, load_minisign_key(keyfile))
