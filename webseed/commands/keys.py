"""``webseed keygen`` (publisher keys) and ``webseed keys`` (developers' release keys)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from webseed.commands._common import cli_errors
from webseed.integrity.keys import PASSPHRASE_ENV, generate_keypair
from webseed.integrity.release_sig import KeyStore


def default_keystore() -> Path:
    """``$XDG_CONFIG_HOME/webseed/keys`` (``~/.config/webseed/keys``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "webseed" / "keys"


KeystoreOpt = Annotated[
    Path | None, typer.Option("--keystore", help="Key store directory (default: XDG config).")
]


def keygen(
    out: Annotated[Path, typer.Option("--out", help="Directory for NAME.key and NAME.pub.")],
    name: Annotated[str, typer.Option(help="File name stem of the key pair.")] = "webseed",
    encrypt: Annotated[
        bool, typer.Option(help=f"Encrypt the private key with ${PASSPHRASE_ENV}.")
    ] = False,
) -> None:
    """Create one Ed25519 publisher key pair; the private key is readable by you only.

    One key signs every index role. To split roles across keys, run keygen once
    per key and pass ``--key ROLE[,ROLE]=FILE`` to ``webseed publish``.
    """
    with cli_errors():
        passphrase = None
        if encrypt:
            value = os.environ.get(PASSPHRASE_ENV)
            if not value:
                typer.echo(f"error: --encrypt needs ${PASSPHRASE_ENV}", err=True)
                raise typer.Exit(2)
            passphrase = value.encode()
        pair = generate_keypair(out, name, passphrase=passphrase)
        typer.echo(f"private key: {pair.private}")
        typer.echo(f"public key:  {pair.public}")
        typer.echo(f"key id:      {pair.keyid}")


keys_app = typer.Typer(help="Developers' release-signing keys (minisign), trusted and revoked.")


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option("--out", help="Directory for NAME.key/NAME.pub.")],
    name: Annotated[str, typer.Option(help="File name stem.")] = "release",
    keystore: KeystoreOpt = None,
) -> None:
    """Create a minisign key pair for signing releases, and trust its public key."""
    with cli_errors():
        kid = KeyStore(keystore or default_keystore()).generate(out, name)
        typer.echo(f"generated and trusted key {kid}")


@keys_app.command("add")
def keys_add(pubfile: Path, keystore: KeystoreOpt = None) -> None:
    """Trust a developer's minisign public key file."""
    with cli_errors():
        kid = KeyStore(keystore or default_keystore()).add(pubfile)
        typer.echo(f"trusted key {kid}")


@keys_app.command("list")
def keys_list(keystore: KeystoreOpt = None) -> None:
    """List trusted and revoked key ids."""
    store = KeyStore(keystore or default_keystore())
    for kid in store.list():
        typer.echo(f"trusted {kid}")
    for kid in sorted(store.revoked()):
        typer.echo(f"revoked {kid}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, keystore: KeystoreOpt = None) -> None:
    """Revoke a key id: signatures made by it are refused from now on."""
    KeyStore(keystore or default_keystore()).revoke(key_id)
    typer.echo(f"revoked key {key_id.upper()}")


@keys_app.command("verify")
def keys_verify(
    file: Path,
    signature: Annotated[
        Path | None, typer.Option("--sig", help="Signature file (default: FILE.minisig).")
    ] = None,
    keystore: KeystoreOpt = None,
) -> None:
    """Verify a developer's minisign signature (prehashed form) over a release file."""
    with cli_errors():
        check = KeyStore(keystore or default_keystore()).verify(
            file, signature or Path(f"{file}.minisig")
        )
        typer.echo(f"ok: {file} signed by {check.key_id} ({check.trusted_comment})")


def register(app: typer.Typer) -> None:
    """Add ``keygen`` and ``keys`` to the CLI."""
    app.command()(keygen)
    app.add_typer(keys_app, name="keys")
