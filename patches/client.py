"""Rebuilding a new version from an old file and patches, verified against the manifest.

For ``webseed get --from OLD``: the result replaces ``out`` only when its size,
chunk digests, pieces root and whole-file digests equal the target manifest's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from patches.apply import apply_patch, read_header
from patches.errors import PatchBaseMismatchError, PatchError, PatchTargetMismatchError
from webseed.integrity.digests import hash_file
from webseed.manifest import Manifest


def verify_against(file: Path | str, manifest: Manifest) -> None:
    """Raise :class:`PatchTargetMismatchError` unless ``file`` is exactly ``manifest``'s."""
    if os.path.getsize(file) != manifest.size:
        raise PatchTargetMismatchError("rebuilt file has the wrong size")
    got = hash_file(file, manifest.chunk_size, list(manifest.digests))
    if (
        tuple(c.hex() for c in got.chunks) != manifest.chunks
        or got.pieces_root.hex() != manifest.pieces_root
        or any(got.digests.get(k) != v for k, v in manifest.digests.items())
    ):
        raise PatchTargetMismatchError("rebuilt file does not match the manifest")


def rebuild(
    old_file: Path | str,
    patch_file: Path | str | Sequence[Path | str],
    expected_manifest: Manifest,
    out: Path | str,
) -> None:
    """Apply one patch (or a chain, in order) to ``old_file``; verified result at ``out``.

    ``old_file`` is never modified and ``out`` is replaced only by a verified file;
    on any error (:class:`PatchError`) nothing is left behind.
    """
    chain = [patch_file] if isinstance(patch_file, (str, os.PathLike)) else list(patch_file)
    if not chain:
        raise PatchError("no patch to apply")
    out = Path(out)
    last = read_header(chain[-1])
    if (
        last.target_size != expected_manifest.size
        or last.target_sha256.hex() != expected_manifest.digests.get("sha256")
    ):
        raise PatchBaseMismatchError("the patch does not lead to the expected version")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as d:
        current = Path(old_file)
        for i, patch in enumerate(chain):
            step = Path(d) / f"step{i}"
            apply_patch(current, patch, step)  # checks base and target sha256 of the step
            current = step
        verify_against(current, expected_manifest)
        os.replace(current, out)
