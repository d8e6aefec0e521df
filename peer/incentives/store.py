"""Crash-safe JSON state files: write a temporary file, fsync, rename over, fsync the directory."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from . import log
from .errors import LedgerError


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, sort_keys=True, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LedgerError(f"cannot write {path}: {exc}") from exc


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None if it is absent.

    A file that does not parse (only possible if something other than
    :func:`write_json` wrote it) is moved aside to ``<name>.corrupt`` and
    treated as absent: losing old credit is better than a peer that will not start.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("state file %s did not parse; moved to %s and started afresh", path, aside)
        return None
