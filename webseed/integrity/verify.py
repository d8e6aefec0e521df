"""Checking a file on disk against its manifest, chunk by chunk, with alerts on failure."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from webseed.integrity.alerts import AlertSink, TamperAlert
from webseed.integrity.digests import DEFAULT_POLICY, HashPolicy, hash_file
from webseed.manifest import Manifest


@dataclass
class VerifyResult:
    """Outcome of :func:`verify_file`: ``ok`` only if every check passed."""

    path: str
    ok: bool = True
    bad_chunks: list[int] = field(default_factory=list)
    checked_digests: list[str] = field(default_factory=list)
    alerts: list[TamperAlert] = field(default_factory=list)


def verify_file(
    file: str | os.PathLike[str],
    manifest: Manifest,
    *,
    policy: HashPolicy = DEFAULT_POLICY,
    all_digests: bool = False,
    sink: AlertSink | None = None,
    source: str | None = None,
) -> VerifyResult:
    """Verify ``file`` against ``manifest``: size, every chunk digest, whole-file digests.

    Whole-file digests checked are the policy's ``verify`` set (SHA-256 by
    default), or every digest in the manifest with ``all_digests``. The chunk
    digests alone already cover every byte with SHA-256.
    """
    result = VerifyResult(path=manifest.path)

    def alert(a: TamperAlert) -> None:
        result.ok = False
        result.alerts.append(a)
        if sink is not None:
            sink.emit(a)

    path = Path(file)
    try:
        size = path.stat().st_size
    except OSError as exc:
        alert(
            TamperAlert(
                "missing", manifest.path, f"cannot read {path}: {exc.strerror}", source=source
            )
        )
        return result
    if size != manifest.size:
        alert(
            TamperAlert(
                "size",
                manifest.path,
                f"size {size}, expected {manifest.size}",
                source=source,
                expected=str(manifest.size),
                actual=str(size),
            )
        )
        return result
    names = sorted(manifest.digests) if all_digests else policy.to_verify(manifest.digests)
    result.checked_digests = names

    def on_chunk(index: int, digest: bytes) -> None:
        if digest.hex() != manifest.chunks[index]:
            result.bad_chunks.append(index)
            alert(
                TamperAlert(
                    "chunk-digest",
                    manifest.path,
                    f"chunk {index} does not match the manifest",
                    chunk=index,
                    source=source,
                    expected=manifest.chunks[index],
                    actual=digest.hex(),
                )
            )

    hashed = hash_file(path, manifest.chunk_size, names, on_chunk=on_chunk)
    for name in names:
        if hashed.digests[name] != manifest.digests[name]:
            alert(
                TamperAlert(
                    "file-digest",
                    manifest.path,
                    f"{name} of the whole file does not match the manifest",
                    source=source,
                    expected=manifest.digests[name],
                    actual=hashed.digests[name],
                )
            )
    return result
