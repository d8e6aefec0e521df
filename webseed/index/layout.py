"""Where things live in a published repository (a static tree any HTTP server can mirror)."""

from __future__ import annotations

WELL_KNOWN = ".well-known/webseed"
METADATA_DIR = f"{WELL_KNOWN}/metadata"
MANIFESTS_DIR = f"{WELL_KNOWN}/manifests"
PUBLISH_CACHE = f"{WELL_KNOWN}/publish-cache.json"
ROLES = ("root", "targets", "snapshot", "timestamp")


def manifest_relpath(digest: str) -> str:
    """Repository-relative path of the manifest with this digest."""
    return f"{MANIFESTS_DIR}/{digest}.json"
