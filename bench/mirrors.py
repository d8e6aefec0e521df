"""Mirror fallback benchmark: 1 dead, 1 slow and 1 good mirror on loopback.

Measured in the same run, from the same three real HTTP mirrors (Hypercorn +
Starlette, tests/geo/servers.py):

* ``webseed``: geo.MirrorFetcher racing connects (Happy-Eyeballs stagger 75 ms),
  abandoning a mirror that runs far below the others, verifying the sha256;
* ``aria2c`` given a Metalink 4 file with the same three mirrors (dead first),
  default segmenting, hash checked by aria2 itself;
* ``curl`` given the list order: each URL in turn until one succeeds (what a
  shell script or a package manager's plain mirror list does).

Time to first byte is taken on the server side (the moment any mirror sends
the first body byte of any response), the same way for all three clients, and
client side for webseed. Also: mirror-selection latency for 1,000 listed
mirrors (parse + GeoIP placement + ranking).

Run: ``.venv/bin/python -m bench.mirrors [--size-mib 16] [--slow-rate 2e6] [--repeat 3]``.
Writes ``bench/results/mirrors.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._util import table, write_results
from geo.discovery import parse_mirror_list
from geo.fetch import MirrorFetcher
from geo.policy import MirrorPolicy
from geo.proximity import GeoLocator
from tests.geo.conftest import build_city_mmdb
from tests.geo.servers import PATH, MirrorServer, free_refused_port


def _first_byte(servers: list[MirrorServer], since: float) -> float | None:
    times = [t for s in servers for t in s.first_body_sent if t >= since]
    return min(times) - since if times else None


def run_webseed(urls: list[str], size: int, digest: str, servers: list[MirrorServer]) -> dict:
    policy = MirrorPolicy(parse_mirror_list("\n".join(urls)))

    async def go() -> Any:
        # The client (and its TLS context) is created inside the timed region, like
        # aria2c's and curl's process start-up.
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy, min_rate=size / 4.0, slow_grace=0.25)
            return await fetcher.fetch_range(
                PATH, 0, size - 1, total_size=size, expected_digest=digest
            )

    t0 = time.perf_counter()
    result = asyncio.run(go())
    total = time.perf_counter() - t0
    assert hashlib.sha256(result.data).hexdigest() == digest
    return {
        "ok": True,
        "first_byte_s": _first_byte(servers, t0),
        "first_byte_client_s": result.first_byte_s,
        "total_s": total,
        "served_by": [[u, a, b] for u, a, b in result.served_by],
        "skipped": result.failures,
    }


def run_aria2c(urls: list[str], size: int, digest: str, servers: list[MirrorServer]) -> dict:
    exe = shutil.which("aria2c")
    if exe is None:
        return {"ok": False, "error": "aria2c not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "data.meta4"
        entries = "".join(
            f'<url priority="{i}">{u}{PATH}</url>' for i, u in enumerate(urls, start=1)
        )
        meta.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<metalink xmlns="urn:ietf:params:xml:ns:metalink"><file name="data.bin">'
            f'<size>{size}</size><hash type="sha-256">{digest}</hash>{entries}</file></metalink>'
        )
        cmd = [
            exe,
            f"--metalink-file={meta}",
            f"--dir={tmp}",
            "--allow-overwrite=true",
            "--file-allocation=none",
            "--console-log-level=warn",
            "--summary-interval=0",
            "--check-certificate=false",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        total = time.perf_counter() - t0
        out = Path(tmp) / "data.bin"
        ok = proc.returncode == 0 and out.exists()
        got = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
        return {
            "ok": ok and got == digest,
            "first_byte_s": _first_byte(servers, t0),
            "total_s": total,
            "cmd": " ".join([*cmd[:1], "--metalink-file=data.meta4", *cmd[3:]]),
            "returncode": proc.returncode,
        }


def run_curl(urls: list[str], size: int, digest: str, servers: list[MirrorServer]) -> dict:
    exe = shutil.which("curl")
    if exe is None:
        return {"ok": False, "error": "curl not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "data.bin"
        t0 = time.perf_counter()
        tried = []
        for u in urls:  # the list order, like a plain mirror list
            proc = subprocess.run(
                [exe, "-sS", "--fail", "-o", str(out), u + PATH],
                capture_output=True,
                text=True,
                timeout=300,
            )
            tried.append(proc.returncode)
            if proc.returncode == 0:
                break
        total = time.perf_counter() - t0
        got = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else None
        return {
            "ok": got == digest,
            "first_byte_s": _first_byte(servers, t0),
            "total_s": total,
            "cmd": "for u in LIST; do curl -sS --fail -o data.bin $u && break; done",
            "returncodes": tried,
        }


def selection_latency(n: int = 1000, repeat: int = 5) -> dict:
    """Parse a list of ``n`` mirrors, place each with GeoIP, rank: wall time per step."""
    rnd = random.Random(1)
    hosts = [
        f"127.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}" for _ in range(n)
    ]
    text = "\n".join(
        f"http://{h}:{8000 + i}/ priority={rnd.randrange(1, 50)}" for i, h in enumerate(hosts)
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = build_city_mmdb(Path(tmp) / "city.mmdb")
        runs: dict[str, list[float]] = {"parse": [], "geoip": [], "rank": [], "total": []}
        with GeoLocator(db) as geo:
            for _ in range(repeat):
                t0 = time.perf_counter()
                mirrors = parse_mirror_list(text)
                t1 = time.perf_counter()
                policy = MirrorPolicy(client=geo.locate("127.0.0.1"))
                for m, h in zip(mirrors, hosts, strict=True):
                    policy.add(m, geo.locate(h))
                t2 = time.perf_counter()
                best = policy.candidates(0.0, k=3)
                t3 = time.perf_counter()
                assert len(best) == 3
                for key, v in zip(runs, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                    runs[key].append(v)
    return {
        "mirrors": n,
        "repeat": repeat,
        **{f"{k}_ms": 1000 * statistics.median(v) for k, v in runs.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=16)
    ap.add_argument("--slow-rate", type=float, default=2e6, help="slow mirror, bytes/s")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    size = args.size_mib * 1024 * 1024
    data = random.Random(7).randbytes(size)
    digest = hashlib.sha256(data).hexdigest()
    slow = MirrorServer("slow", rate=args.slow_rate, data=data, piece=64 * 1024)
    good = MirrorServer("good", data=data, piece=256 * 1024)
    servers = [slow, good]
    dead = f"http://127.0.0.1:{free_refused_port()}/"
    urls = [dead, slow.url, good.url]  # worst first: the list order a client is given
    rows: dict[str, list[dict]] = {"webseed": [], "aria2c": [], "curl": []}
    try:
        # One unrecorded warm-up of each client (imports, first-use code paths, page cache).
        for fn in (run_webseed, run_aria2c, run_curl):
            fn([good.url], size, digest, [])
        for _ in range(args.repeat):
            for name, fn in (("webseed", run_webseed), ("aria2c", run_aria2c), ("curl", run_curl)):
                rows[name].append(fn(urls, size, digest, servers))
    finally:
        for s in servers:
            s.stop()
    sel = selection_latency()

    def med(name: str, key: str) -> float | None:
        vals = [r[key] for r in rows[name] if r.get("ok") and r.get(key) is not None]
        return statistics.median(vals) if vals else None

    summary = {
        name: {
            "first_byte_s": med(name, "first_byte_s"),
            "total_s": med(name, "total_s"),
            "ok_runs": sum(1 for r in rows[name] if r.get("ok")),
        }
        for name in rows
    }
    doc = {
        "python": platform.python_version(),
        "setup": {
            "file_bytes": size,
            "mirrors": {
                "dead": "refused port",
                "slow": f"{args.slow_rate:.0f} B/s in-app pacing",
                "good": "unlimited (loopback)",
            },
            "list_order": ["dead", "slow", "good"],
            "repeat": args.repeat,
            "first_byte": "server side: first body byte sent by any mirror after the client "
            "started (client set-up included for all three)",
        },
        "summary": summary,
        "runs": rows,
        "selection_latency": sel,
    }
    path = write_results("mirrors", doc)

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    print(
        f"1 dead + 1 slow ({args.slow_rate / 1e6:.1f} MB/s) + 1 good mirror, "
        f"{args.size_mib} MiB, list order dead/slow/good, median of {args.repeat}"
    )
    print(
        table(
            ["client", "first byte", "total", "verified runs"],
            [
                [name, ms(v["first_byte_s"]), sec(v["total_s"]), f"{v['ok_runs']}/{args.repeat}"]
                for name, v in summary.items()
            ],
        )
    )
    print(
        f"\nselection for {sel['mirrors']} mirrors: parse {sel['parse_ms']:.1f} ms, "
        f"GeoIP {sel['geoip_ms']:.1f} ms, rank {sel['rank_ms']:.1f} ms, "
        f"total {sel['total_ms']:.1f} ms"
    )
    print(f"wrote {path}")
    failed = any(v["ok_runs"] == 0 for k, v in summary.items() if k == "webseed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
