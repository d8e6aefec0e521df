"""Run one :mod:`fuzz.targets` target under atheris (libFuzzer, coverage-guided).

    .venv/bin/python -m fuzz.fuzz_manifest [-max_total_time=30] [libFuzzer flags]

The corpus starts from genuine inputs (a real manifest, patch, receipt, ...)
so the fuzzer begins past the first checks. Any exception other than the
documented errors, and any failed "nothing unverified accepted" assertion,
is a crash: libFuzzer saves the input and exits non-zero.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

#: Corpora persist here between runs (gitignored), so longer runs build on shorter ones.
CORPUS = Path(__file__).resolve().parent.parent / "bench" / "cache" / "fuzz-corpus"


def seeds(name: str) -> list[bytes]:
    """Genuine inputs for ``name``'s starting corpus."""
    from fuzz import targets as t

    if name in ("manifest", "export"):
        return [t.valid_manifest_bytes()]
    if name == "bencode":
        from webseed.export.torrent import torrent_bytes
        from webseed.manifest import Manifest

        return [torrent_bytes(Manifest.parse(t.valid_manifest_bytes()), ["http://a/"])]
    if name == "ranges":
        return [b"\0\0\0\1\0\0bytes=0-99,200-,-5", b"\0\0\1\0\0\0bytes=1-1"]
    if name == "patch":
        return [t.valid_patch_bytes()]
    if name == "auth":
        return [t.valid_auth_header().encode()]
    if name in ("auth_mutated", "receipt"):
        return [b"\0\0\0", t.valid_receipt().encode()]
    if name == "index":
        return [bytes([i]) + b"\0\0\0" for i in range(len(t.index_files()))]
    if name == "journal":
        return [b"\xff\x01" + b"\0" * 16]
    return [b""]


def run(name: str, argv: list[str] | None = None) -> None:
    """Fuzz target ``name`` with libFuzzer flags ``argv`` (default: ``sys.argv[1:]``)."""
    import atheris

    from fuzz import targets

    logging.disable(logging.WARNING)  # refused inputs are logged; millions of them here
    target = targets.TARGETS[name]
    with atheris.instrument_imports(include=["webseed", "peer", "patches"]):
        for seed in seeds(name):  # imports the parser's modules (instrumented) and checks seeds
            target(seed)
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed{i}").write_bytes(seed)
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("-max_total_time") or a.startswith("-runs") for a in args):
        args.append(f"-max_total_time={int(os.environ.get('FUZZ_SECONDS', '30'))}")
    atheris.Setup([sys.argv[0], *args, str(corpus)], target)
    atheris.Fuzz()
