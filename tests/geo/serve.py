"""Run one test mirror in this process until stdin closes (used inside a network namespace).

    python -m tests.geo.serve --host 198.19.7.2 --mode good [--size-mib 1 --seed N]

Prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import random
import sys

from tests.geo.servers import DATA, MirrorServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--mode", default="good")
    ap.add_argument("--size-mib", type=int, default=0, help="0: the tests' 1 MiB DATA")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--piece", type=int, default=64 * 1024)
    args = ap.parse_args()
    data = (
        random.Random(args.seed).randbytes(args.size_mib * 1024 * 1024) if args.size_mib else DATA
    )
    server = MirrorServer(args.mode, host=args.host, data=data, piece=args.piece)
    print(f"PORT {server.port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop()


if __name__ == "__main__":
    main()
