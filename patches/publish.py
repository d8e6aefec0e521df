"""Making patches while publishing: from the previous versions of an artifact to the new one.

``webseed publish`` calls :func:`make_patches` for each new artifact with the older
versions it still holds. Patches are written under ``out_dir`` at their repository
path (``patches/<family>/<from>_<to>.wsp``) and published as ordinary artifacts;
the returned links go into the new artifact's manifest (``Manifest.patches``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from patches.create import create_patch
from webseed.manifest import Manifest, PatchLink, build_manifest
from webseed.paths import check_repo_path

PATCH_DIR = "patches"
MAX_PATCHES = 3  # the publisher keeps 3 versions; more patches than that rarely pay
MAX_RATIO = 0.5  # a patch over half the new file is not worth publishing
_PRE = {"a", "b", "c", "rc", "alpha", "beta", "pre", "preview", "dev", "~"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")

OldVersion = tuple[str, Path, Manifest]  # (repository path, local file, manifest)


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key for versions: numbers numerically, pre-releases (rc, a, dev, ~) first.

    ``2.1.0rc1 < 2.1.0 < 2.1.0.post1 < 2.1.1`` and ``3.0.20-1~deb12u2 < 3.0.22-1~deb12u2``.
    """
    key = []
    for tok in re.findall(r"\d+|[A-Za-z]+|~", version):
        if tok.isdigit():
            key.append((2, int(tok), ""))
        elif tok.lower() in _PRE:
            key.append((0, 0, tok.lower()))
        else:
            key.append((1, 1, tok.lower()))
    key.append((1, 0, ""))  # end: above pre-releases, below anything that continues
    return tuple(key)


def family(path: str, version: str) -> str:
    """The artifact's name with its version blanked: what successive versions share."""
    name = path.rsplit("/", 1)[-1]
    if version and version in name:
        name = name.replace(version, "#", 1)
    return f"{path.rsplit('/', 1)[0]}/{name}" if "/" in path else name


def patch_path(new: Manifest, from_version: str) -> str:
    """Repository path of the patch from ``from_version`` to ``new``."""
    fam = _UNSAFE.sub("_", family(new.path, new.version).replace("/", "_").replace("#", ""))
    frm, to = (_UNSAFE.sub("_", v) for v in (from_version, new.version))
    path = f"{PATCH_DIR}/{fam.strip('._') or 'artifact'}/{frm}_{to}.wsp"
    check_repo_path(path)
    return path


def previous_versions(
    new: Manifest, candidates: Iterable[OldVersion], limit: int = MAX_PATCHES
) -> list[OldVersion]:
    """Older versions of the same family as ``new``, newest first, at most ``limit``."""
    if not new.version:
        return []
    fam = family(new.path, new.version)
    mine = version_key(new.version)
    same = [
        c
        for c in candidates
        if c[2].version
        and family(c[0], c[2].version) == fam
        and version_key(c[2].version) < mine
        and c[2].digests.get("sha256") != new.digests.get("sha256")
    ]
    same.sort(key=lambda c: version_key(c[2].version), reverse=True)
    return same[:limit]


def make_patches(
    old_versions: Sequence[OldVersion],
    new_file: Path | str,
    new_manifest: Manifest,
    out_dir: Path | str,
    *,
    limit: int = MAX_PATCHES,
    max_ratio: float = MAX_RATIO,
) -> list[dict[str, Any]]:
    """Create patches from the older versions of ``new_manifest``'s family to ``new_file``.

    ``old_versions`` may hold anything the repository has (other families, newer
    versions): only older versions of the same family are used, newest first. Each
    patch is verified by applying it (see :func:`patches.create.create_patch`) and
    written to ``out_dir / <path>``; patches larger than ``max_ratio`` of the new
    file are dropped. Returns, per patch, :class:`PatchLink` fields (``from_version``,
    ``base_digest`` = sha256 of the old file, ``path``, ``size``, ``manifest`` = digest
    of the patch artifact's manifest) plus ``file`` (where it was written) and
    ``patch_manifest`` (that :class:`Manifest`, to publish the patch with).
    """
    out_dir = Path(out_dir)
    links: list[dict[str, Any]] = []
    for _path, old_file, old_manifest in previous_versions(new_manifest, old_versions, limit):
        rel = patch_path(new_manifest, old_manifest.version)
        dest = out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        info = create_patch(old_file, new_file, dest)
        if info.size > max_ratio * new_manifest.size:
            dest.unlink()
            continue
        pm = build_manifest(dest, rel, version=new_manifest.version)
        links.append(
            {
                "from_version": old_manifest.version,
                "base_digest": old_manifest.digests["sha256"],
                "path": rel,
                "size": info.size,
                "manifest": pm.digest,
                "file": dest,
                "patch_manifest": pm,
            }
        )
    return links


def to_links(made: Iterable[dict[str, Any]]) -> tuple[PatchLink, ...]:
    """The :class:`PatchLink` objects for ``Manifest.patches``."""
    return tuple(
        PatchLink(
            from_version=m["from_version"],
            base_digest=m["base_digest"],
            path=m["path"],
            size=m["size"],
            manifest=m["manifest"],
        )
        for m in made
    )


def manifest_hook(
    made: Iterable[dict[str, Any]],
    inner: Callable[[Manifest, Path], Manifest] | None = None,
) -> Callable[[Manifest, Path], Manifest]:
    """A ``Publisher.publish(manifest_hook=...)`` that publishes patch files with the
    manifests their links point to (the publisher would otherwise guess another version)."""
    by_path = {m["path"]: m["patch_manifest"] for m in made}

    def hook(manifest: Manifest, file: Path) -> Manifest:
        if manifest.path in by_path:
            return by_path[manifest.path]  # type: ignore[no-any-return]
        return inner(manifest, file) if inner else manifest

    return hook
