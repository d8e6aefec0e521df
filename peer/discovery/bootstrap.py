"""Where first contacts come from, with no tracker.

In order: peers the user names (``--peer URL``), the peers that served our
last downloads (persisted under ``$XDG_STATE_HOME/webseed/discovery``), and
the mirrors (and seed peers) of the signed repository index. A plain static
mirror does not answer pex; the exchange backs off from it and carries on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .announce import valid_url

LAST_SERVED_FILE = "last-served.json"
#: Most peers remembered; oldest forgotten first.
MAX_REMEMBERED = 32
#: Remembered peers older than this are forgotten (seconds).
MAX_AGE = 30 * 86400
MAX_FILE = 64 * 1024


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/webseed/discovery`` (``~/.local/state/webseed/discovery``)."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "webseed" / "discovery"


def load_last_served(directory: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The remembered peers, newest first (an unreadable or hostile file reads as empty)."""
    now = time.time() if now is None else now
    path = directory / LAST_SERVED_FILE
    try:
        if path.stat().st_size > MAX_FILE:
            return []
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return []
    peers = data.get("peers") if isinstance(data, dict) else None
    out: list[dict[str, Any]] = []
    for item in peers if isinstance(peers, list) else []:
        if not isinstance(item, dict):
            continue
        url, last = valid_url(item.get("url")), item.get("last")
        if url is None or not isinstance(last, int | float) or now - last > MAX_AGE:
            continue
        served = item.get("bytes")
        out.append({"url": url, "last": last, "bytes": served if isinstance(served, int) else 0})
    out.sort(key=lambda p: -p["last"])
    return out[:MAX_REMEMBERED]


def save_last_served(directory: Path, served: Mapping[str, int], now: float | None = None) -> Path:
    """Remember the peers (base URL → bytes they served) of a finished download.

    Merged with what was remembered, bounded to :data:`MAX_REMEMBERED`, written
    atomically with user-only permissions.
    """
    now = time.time() if now is None else now
    merged = {p["url"]: p for p in load_last_served(directory, now)}
    for url, nbytes in served.items():
        valid = valid_url(url)
        if valid is not None and nbytes > 0:
            merged[valid] = {"url": valid, "last": int(now), "bytes": int(nbytes)}
    peers = sorted(merged.values(), key=lambda p: (-p["last"], -p["bytes"]))[:MAX_REMEMBERED]
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / LAST_SERVED_FILE
    tmp = directory / f".{LAST_SERVED_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"version": 1, "peers": peers}, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def bootstrap_urls(
    *,
    named: Iterable[str] = (),
    state_dir: Path | None = None,
    index_mirrors: Iterable[Mapping[str, object]] = (),
    now: float | None = None,
) -> list[str]:
    """First contacts: named peers, then last-served peers, then index mirrors; de-duplicated."""
    candidates: list[object] = list(named)
    if state_dir is not None:
        candidates += [p["url"] for p in load_last_served(state_dir, now)]
    candidates += [m.get("url") for m in index_mirrors]
    out: list[str] = []
    for url in candidates:
        valid = valid_url(url)
        if valid is not None and valid not in out:
            out.append(valid)
    return out
