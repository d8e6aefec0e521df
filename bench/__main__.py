"""Run every benchmark module in ``bench/`` (or those named on the command line)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = [m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")]
    # `make soak` runs the long reliability run on its own; `make bench` is the comparisons.
    chosen = argv or sorted(n for n in names if n != "soak")
    failed = 0
    for name in chosen:
        if name not in names:
            print(f"unknown benchmark {name!r}; have: {', '.join(sorted(names))}")
            return 2
        print(f"\n=== bench.{name} ===", flush=True)
        module = importlib.import_module(f"bench.{name}")
        failed |= int(module.main([]) or 0)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
