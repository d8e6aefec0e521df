"""Which keys sign which index role, and with what threshold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from webseed.errors import KeyFileError
from webseed.index.layout import ROLES


def tuf_key(public: Ed25519PublicKey) -> SSlibKey:
    """The TUF key object (and key id) of an Ed25519 public key."""
    return SSlibKey.from_crypto(public)


@dataclass
class RoleKeys:
    """Signers per role and the threshold of each role (used when the root is created)."""

    signers: dict[str, list[CryptoSigner]] = field(default_factory=dict)
    thresholds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def single(cls, key: Ed25519PrivateKey) -> RoleKeys:
        """One key signs every role, threshold 1: the simple publisher's set-up."""
        signer = CryptoSigner(key)
        return cls({role: [signer] for role in ROLES}, {role: 1 for role in ROLES})

    @classmethod
    def from_assignments(
        cls,
        assignments: Iterable[tuple[Iterable[str], Ed25519PrivateKey]],
        thresholds: Mapping[str, int] | None = None,
    ) -> RoleKeys:
        """Keys assigned to roles, e.g. ``[(["root"], k1), (["targets", "snapshot"], k2)]``."""
        keys = cls()
        for roles, key in assignments:
            signer = CryptoSigner(key)
            for role in roles:
                if role not in ROLES:
                    raise KeyFileError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
                keys.signers.setdefault(role, []).append(signer)
        missing = [r for r in ROLES if r not in keys.signers]
        if missing:
            raise KeyFileError(f"no key for role(s): {', '.join(missing)}")
        for role in ROLES:
            wanted = (thresholds or {}).get(role, 1)
            if not 1 <= wanted <= len(keys.signers[role]):
                raise KeyFileError(
                    f"threshold {wanted} for {role} needs at least that many keys "
                    f"(have {len(keys.signers[role])})"
                )
            keys.thresholds[role] = wanted
        return keys

    def public_keys(self, role: str) -> list[Key]:
        """The TUF public keys of the signers of ``role``."""
        return [s.public_key for s in self.signers[role]]
