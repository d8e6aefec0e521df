"""The Python API for build tools and release scripts.

    import webseed
    result = webseed.publish("dist/", "public/", key="env:WEBSEED_KEY")
    print(result.index_version, result.added)

``webseed.publish`` is loaded lazily by ``webseed/__init__.py``, so ``import
webseed`` stays cheap (no cryptography, TUF or HTTP imports until it is called).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from webseed.index.keys import RoleKeys
from webseed.index.layout import ROLES
from webseed.index.publisher import PublishReport

KeySpec = str | os.PathLike[str] | Ed25519PrivateKey | RoleKeys


@dataclass
class PublishResult(PublishReport):
    """What :func:`publish` did: the index report plus the package views written."""

    pypi_projects: int = 0
    apt_packages: int = 0


def _role_keys(key: KeySpec | Sequence[KeySpec], thresholds: Mapping[str, int] | None) -> RoleKeys:
    from webseed.commands.publish import parse_key_specs

    if isinstance(key, RoleKeys):
        return key
    if isinstance(key, Ed25519PrivateKey):
        return RoleKeys.from_assignments([(ROLES, key)], thresholds)
    specs: Iterable[KeySpec] = [key] if isinstance(key, str | os.PathLike) else key
    if any(isinstance(k, Ed25519PrivateKey | RoleKeys) for k in specs):
        raise TypeError("a sequence of keys must hold specs (FILE, env:VAR, fd:N, ROLE=SPEC)")
    texts = [os.fspath(k) for k in specs]  # type: ignore[arg-type]
    limits = [f"{r}={n}" for r, n in (thresholds or {}).items()]
    return parse_key_specs(texts, limits)


def publish(
    src: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    key: KeySpec | Sequence[KeySpec],
    mirrors: Sequence[Mapping[str, Any]] | None = None,
    thresholds: Mapping[str, int] | None = None,
    pypi: bool = True,
    apt: bool = True,
) -> PublishResult:
    """Publish the release tree ``src`` into the repository directory ``repo``.

    ``key``: a private key file, ``"env:VAR"`` or ``"fd:N"`` (as ``webseed
    publish --key``), an ``Ed25519PrivateKey``, a list of ``ROLE[,ROLE]=SPEC``
    strings, or prepared :class:`~webseed.index.keys.RoleKeys`. ``mirrors``
    (dicts with ``url`` and optional ``country``, ``lat``, ``lon``) replaces the
    signed mirror list; ``None`` keeps it. Incremental: unchanged files are not
    hashed again. Raises a :class:`~webseed.errors.WebseedError` on any failure.
    """
    from webseed.commands.publish import publish_tree, write_package_views

    keys = _role_keys(key, thresholds)
    report: PublishReport = publish_tree(
        Path(src), Path(repo), keys, mirrors=[dict(m) for m in mirrors] if mirrors else None
    )
    views = write_package_views(Path(repo), pypi=pypi, apt=apt)
    return PublishResult(
        **report.__dict__, pypi_projects=views["pypi_projects"], apt_packages=views["apt_packages"]
    )
