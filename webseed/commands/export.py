"""``webseed export``: a ``.torrent`` or Metalink 4 file for one artifact."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from webseed.commands._common import cli_errors
from webseed.export.metalink import MirrorRef, metalink_xml, piece_hashes
from webseed.export.torrent import torrent_bytes
from webseed.index.client import local_root_key, open_index_once
from webseed.integrity.keys import load_public_key
from webseed.paths import resolve_under


class Format(enum.StrEnum):
    """Export formats."""

    metalink = "metalink"
    torrent = "torrent"


def export(
    path: Annotated[str, typer.Argument(help="Repository path of the artifact.")],
    repo: Annotated[Path, typer.Option("--repo", help="Repository directory.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="File to write.")],
    fmt: Annotated[Format, typer.Option("--format", help="metalink or torrent.")] = Format.metalink,
    mirror: Annotated[
        list[str] | None,
        typer.Option("--mirror", help="Extra mirror/peer base URL (repeatable)."),
    ] = None,
    root_key: Annotated[
        Path | None, typer.Option("--root-key", help="Pinned publisher key (.pub).")
    ] = None,
) -> None:
    """Write a Metalink 4 or BitTorrent v2 file for PATH (index mirrors + --mirror URLs).

    The manifest comes from the signed index, checked with --root-key; without
    it, the repository's own root key is trusted (the publisher's side).
    """
    with cli_errors():
        pinned = load_public_key(root_key) if root_key else local_root_key(repo)
        index = open_index_once(str(repo), pinned)
        entry = index.lookup(path)
        manifest = index.fetch_manifest(entry)
        refs = [
            MirrorRef(str(m["url"]), str(m.get("country") or "") or None, i + 1)
            for i, m in enumerate(index.mirrors)
        ]
        refs += [MirrorRef(u, None, len(refs) + i + 1) for i, u in enumerate(mirror or [])]
        if fmt is Format.torrent:
            data = torrent_bytes(manifest, [r.base for r in refs])
        else:
            pieces = piece_hashes(resolve_under(repo, entry.path), manifest)
            data = metalink_xml(manifest, refs, pieces)
        out.write_bytes(data)
    typer.echo(f"wrote {out} ({fmt.value}, {len(refs)} source(s))")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the CLI."""
    app.command()(export)
