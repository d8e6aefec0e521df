"""``webseed publish``: manifests and the signed index for a source tree."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from webseed.commands._common import cli_errors
from webseed.errors import KeyFileError, RepositoryIndexError
from webseed.index.keys import RoleKeys
from webseed.index.layout import PUBLISH_CACHE, ROLES, manifest_relpath
from webseed.index.publisher import Publisher, PublishReport, guess_version, load_targets
from webseed.integrity.keys import load_private_key
from webseed.manifest import Manifest, build_manifest


def parse_key_specs(specs: list[str], thresholds: list[str]) -> RoleKeys:
    """``FILE`` signs every role; ``ROLE[,ROLE]=FILE`` signs those (FILE may be env:/fd:)."""
    if not specs:
        raise KeyFileError("at least one --key is needed")
    assignments = []
    for spec in specs:
        roles_part, sep, source = spec.partition("=")
        if sep and all(r in ROLES for r in roles_part.split(",")):
            roles = roles_part.split(",")
        else:
            roles, source = list(ROLES), spec
        assignments.append((roles, load_private_key(source)))
    limits: dict[str, int] = {}
    for item in thresholds:
        role, _, value = item.partition("=")
        if role not in ROLES or not value.isdigit():
            raise KeyFileError(f"bad --threshold {item!r}: want ROLE=N")
        limits[role] = int(value)
    return RoleKeys.from_assignments(assignments, limits)


def publish_tree(
    src: Path,
    repo: Path,
    keys: RoleKeys,
    *,
    mirrors: list[dict[str, Any]] | None = None,
    patches: bool = True,
) -> PublishReport:
    """Library entry point for build tools: publish ``src`` into ``repo`` signed with ``keys``.

    With ``patches`` (and the ``[patches]`` extra installed), each new version of an
    artifact gets patches from up to three earlier versions the repository holds,
    published as artifacts and linked from its manifest.
    """
    publisher = Publisher(repo, keys)
    hook, extra, built = _prepare_patches(publisher, src, repo) if patches else (None, [], {})
    return publisher.publish(
        src, mirrors=mirrors, manifest_hook=hook, extra_files=extra, manifests=built
    )


PATCH_DIR = "patches"
_Prepared = tuple[
    Callable[[Manifest, Path], Manifest] | None, list[tuple[Path, str]], dict[str, Manifest]
]


def _prepare_patches(publisher: Publisher, src: Path, repo: Path) -> _Prepared:
    try:
        from patches.publish import make_patches, manifest_hook, to_links
    except ImportError:  # the bootstrap install has no [patches] extra: publish without
        return None, [], {}
    try:
        cache: dict[str, Any] = json.loads((repo / PUBLISH_CACHE).read_bytes())
    except (OSError, ValueError):
        return None, [], {}  # a first publish has no earlier versions to patch from
    changed = []
    for file, path in publisher.walk(src):
        st = file.stat()
        record = cache.get(path)
        if record and record.get("stamp") == [st.st_size, st.st_mtime_ns]:
            continue  # unchanged since the last publish: its patches exist already
        if guess_version(path) and not path.startswith(f"{PATCH_DIR}/"):
            changed.append((file, path))
    if not changed:
        return None, [], {}
    # A patch family lives in one directory: only earlier versions there can be bases.
    dirs = {_directory(path) for _, path in changed}
    old_versions = []
    for path, record in cache.items():
        mfile = repo / manifest_relpath(record["manifest"])
        if _directory(path) in dirs and (repo / path).exists() and mfile.exists():
            manifest = Manifest.parse(mfile.read_bytes(), expected_digest=record["manifest"])
            old_versions.append((path, repo / path, manifest))
    built: dict[str, Manifest] = {}
    made_for: dict[str, list[dict[str, Any]]] = {}
    for file, path in changed:
        # Built once here and handed to the publisher, which then does not hash it again.
        built[path] = new = build_manifest(file, path, version=guess_version(path))
        made = make_patches(old_versions, file, new, repo)
        if made:
            made_for[path] = made
    if not made_for:
        return None, [], built
    everything = [m for made in made_for.values() for m in made]

    def link(manifest: Manifest, file: Path) -> Manifest:
        made = made_for.get(manifest.path)
        return replace(manifest, patches=to_links(made)) if made else manifest

    extra = [(Path(m["file"]), str(m["path"])) for m in everything]
    return manifest_hook(everything, inner=link), extra, built


def _directory(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def write_package_views(repo: Path, *, pypi: bool = True, apt: bool = True) -> dict[str, int]:
    """Write the pip and apt views of ``repo`` from its index (one file read, no re-hashing)."""
    from webseed.ecosystem.debian import DebFile, write_apt_metadata
    from webseed.ecosystem.pypi import DistFile, write_simple_index

    targets = load_targets(repo)
    entries = targets.signed.targets if targets is not None else {}
    files = [(path, t.hashes["sha256"], t.length) for path, t in sorted(entries.items())]
    out = {"pypi_projects": 0, "apt_packages": 0}
    if pypi:
        out["pypi_projects"] = write_simple_index(repo, [DistFile(*f) for f in files])
    if apt:
        debs = [DebFile(*f) for f in files if f[0].endswith(".deb")]
        out["apt_packages"] = write_apt_metadata(repo, debs)
    return out


def load_mirror_list(path: Path) -> list[dict[str, Any]]:
    """A JSON list of mirrors: ``[{"url": ..., "country": "DE", "lat": .., "lon": ..}, ...]``."""
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise RepositoryIndexError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise RepositoryIndexError(f"{path}: want a JSON list of mirrors")
    return [m if isinstance(m, dict) else {"url": m} for m in data]


def publish(
    src_dir: Annotated[Path, typer.Argument(help="Tree of release files to publish.")],
    repo: Annotated[Path, typer.Option("--repo", help="Repository directory (static tree).")],
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            help="Signing key: FILE, env:VAR or fd:N; ROLE[,ROLE]=SOURCE to split roles.",
        ),
    ],
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="ROLE=N signatures required (new repositories)."),
    ] = None,
    mirrors: Annotated[
        Path | None,
        typer.Option("--mirrors", help="JSON list of mirrors to sign into the index."),
    ] = None,
    make_patches: Annotated[
        bool,
        typer.Option(
            "--patches/--no-patches",
            help="Make patches to new versions from earlier ones the repository holds.",
        ),
    ] = True,
    pypi: Annotated[
        bool, typer.Option(help="Write a PEP 503/691 simple index of wheels and sdists.")
    ] = True,
    apt: Annotated[bool, typer.Option(help="Write dists/ (Packages, Release) for .debs.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Publish SRC_DIR into REPO_DIR: manifests, artifacts and a new signed index version.

    Incremental: unchanged files (same size and mtime) are not hashed again.
    Serving REPO_DIR with any static HTTP server makes a complete mirror.
    """
    with cli_errors():
        keys = parse_key_specs(key, threshold or [])
        mirror_list = load_mirror_list(mirrors) if mirrors else None
        report = publish_tree(src_dir, repo, keys, mirrors=mirror_list, patches=make_patches)
        views = write_package_views(repo, pypi=pypi, apt=apt)
    if as_json:
        typer.echo(json.dumps({**report.__dict__, **views}, sort_keys=True))
        return
    for kind, count in views.items():
        if count:
            typer.echo(f"{kind.replace('_', ' ')}: {count}")
    typer.echo(
        f"index version {report.index_version}: {len(report.added)} added, "
        f"{len(report.changed)} changed, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged ({report.hashed_bytes} bytes hashed)"
    )


def register(app: typer.Typer) -> None:
    """Add ``publish`` to the CLI."""
    app.command()(publish)
