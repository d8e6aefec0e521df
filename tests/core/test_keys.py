from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import minisign
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import write_random
from tests.prereq import needs
from webseed.errors import KeyFileError, SignatureError
from webseed.integrity import keys
from webseed.integrity.release_sig import (
    MAX_FILE,
    KeyStore,
    load_minisign_key,
    load_signature,
    verify_release,
)


def test_generate_and_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = keys.generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert pair.public.name.endswith(".pub")
    priv = keys.load_private_key(str(pair.private))
    pub = keys.load_public_key(pair.public)
    assert keys.key_id(pub) == keys.key_id(priv.public_key()) == pair.keyid
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keys.generate_keypair(tmp_path / "k")
    monkeypatch.setenv("WS_KEY", pair.private.read_text())
    assert keys.key_id(keys.load_private_key("env:WS_KEY").public_key()) == pair.keyid
    with pytest.raises(KeyFileError, match="not set"):
        keys.load_private_key("env:WS_MISSING")
    r, w = os.pipe()
    os.write(w, pair.private.read_bytes())
    os.close(w)
    try:
        assert keys.key_id(keys.load_private_key(f"fd:{r}").public_key()) == pair.keyid
    finally:
        os.close(r)
    with pytest.raises(KeyFileError, match="bad file descriptor"):
        keys.load_private_key("fd:x")
    with pytest.raises(KeyFileError, match="cannot read key from"):
        keys.load_private_key("fd:987")


def test_encrypted_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = keys.generate_keypair(tmp_path, passphrase=b"hunter2")
    monkeypatch.delenv(keys.PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeyFileError, match="encrypted"):
        keys.load_private_key(str(pair.private))
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyFileError, match="not a readable"):
        keys.load_private_key(str(pair.private))
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "hunter2")
    assert keys.load_private_key(str(pair.private))


def test_bad_key_files(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.key").write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ec.pub").write_bytes(keys.public_pem(ec_key.public_key()))  # type: ignore[arg-type]
    with pytest.raises(KeyFileError, match="not an Ed25519 private"):
        keys.load_private_key(str(tmp_path / "ec.key"))
    with pytest.raises(KeyFileError, match="not an Ed25519 public"):
        keys.load_public_key(tmp_path / "ec.pub")
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(KeyFileError, match="not a readable private"):
        keys.load_private_key(str(tmp_path / "junk"))
    with pytest.raises(KeyFileError, match="not a readable public"):
        keys.load_public_key(tmp_path / "junk")
    write_random(tmp_path / "huge", keys.MAX_KEY_BYTES + 1)
    with pytest.raises(KeyFileError, match="too large"):
        keys.load_private_key(str(tmp_path / "huge"))
    with pytest.raises(KeyFileError, match="cannot read key file"):
        keys.load_public_key(tmp_path / "missing.pub")


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, KeyStore]:
    store = KeyStore(tmp_path / "store")
    store.generate(tmp_path / "dev")
    release = write_random(tmp_path / "rel.tar.gz", 200_000)
    secret = minisign.SecretKey.from_file(tmp_path / "dev" / "release.key")
    sig = secret.sign_file(release, prehash=True)
    (tmp_path / "rel.tar.gz.minisig").write_bytes(bytes(sig))
    return release, tmp_path / "rel.tar.gz.minisig", store


def test_release_signature_verified(signed: tuple[Path, Path, KeyStore]) -> None:
    release, sig, store = signed
    check = store.verify(release, sig)
    assert check.key_id == store.list()[0] and "hashed" in check.trusted_comment


def test_release_tampered_and_legacy(signed: tuple[Path, Path, KeyStore], tmp_path: Path) -> None:
    release, sig, store = signed
    data = bytearray(release.read_bytes())
    data[1000] ^= 1
    release.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="does not verify"):
        store.verify(release, sig)
    secret = minisign.SecretKey.from_file(tmp_path / "dev" / "release.key")
    legacy = tmp_path / "legacy.minisig"
    legacy.write_bytes(bytes(secret.sign_file(release, prehash=False)))
    with pytest.raises(SignatureError, match="legacy"):
        load_signature(legacy)
    with pytest.raises(SignatureError, match="cannot read"):
        verify_release(
            tmp_path / "gone",
            load_signature(sig),
            load_minisign_key(tmp_path / "dev" / "release.pub"),
        )


def test_unknown_and_revoked_keys(signed: tuple[Path, Path, KeyStore], tmp_path: Path) -> None:
    release, sig, store = signed
    kid = store.list()[0]
    empty = KeyStore(tmp_path / "empty")
    assert empty.list() == [] and empty.revoked() == set()
    with pytest.raises(SignatureError, match="unknown key"):
        empty.verify(release, sig)
    store.revoke(kid.lower())
    assert store.list() == [] and store.revoked() == {kid}
    with pytest.raises(SignatureError, match="revoked"):
        store.verify(release, sig)
    with pytest.raises(KeyFileError, match="revoked"):
        store.add(tmp_path / "dev" / "release.pub")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        store.generate(tmp_path / "dev")


def test_malformed_signature_and_key_files(tmp_path: Path) -> None:
    (tmp_path / "bad.minisig").write_text("untrusted comment: x\nnot base64!!\n")
    with pytest.raises(SignatureError, match="malformed"):
        load_signature(tmp_path / "bad.minisig")
    (tmp_path / "bad.pub").write_text("untrusted comment: x\nAAAA\n")
    with pytest.raises(KeyFileError, match="malformed"):
        load_minisign_key(tmp_path / "bad.pub")
    write_random(tmp_path / "big.minisig", MAX_FILE + 1)
    with pytest.raises(KeyFileError, match="too large"):
        load_signature(tmp_path / "big.minisig")
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signature(tmp_path / "absent.minisig")


@needs(shutil.which("minisign") is None, "Debian minisign CLI not installed")
def test_interoperates_with_minisign_cli(tmp_path: Path) -> None:
    subprocess.run(
        ["minisign", "-G", "-W", "-p", "k.pub", "-s", "k.key"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    write_random(tmp_path / "rel.iso", 500_000)
    subprocess.run(
        ["minisign", "-S", "-s", "k.key", "-m", "rel.iso"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    store = KeyStore(tmp_path / "store")
    kid = store.add(tmp_path / "k.pub")
    assert kid in (tmp_path / "k.pub").read_text()  # same key id as the CLI prints
    assert store.verify(tmp_path / "rel.iso", tmp_path / "rel.iso.minisig").key_id == kid
