"""Mirror fallback benchmark: 1 dead, 1 slow and 1 good mirror on loopback.

Measured in the same run, from the same three real HTTP mirrors (Hypercorn +
Starlette, tests/geo/servers.py):

* ``webseed``: geo.MirrorFetcher racing connects (Happy-Eyeballs stagger 75 ms),
  abandoning a mirror that runs far below the others, verifying the sha256;
* ``aria2c`` given a Metalink 4 file with the same three mirrors (dead first),
  default segmenting, hash checked by aria2 itself;
* ``curl`` given the list order: each URL in turn until one succeeds (what a
  shell script or a package manager's plain mirror list does), with a 10 s
  connect time-out (its default is 300 s).

Two scenarios: on loopback (the dead mirror refuses at once, the slow one is
paced in the app), and, where network namespaces can be made (root), with a
black-holed dead mirror (SYNs vanish) and the slow one shaped by ``tc tbf`` on
a veth into a namespace (tests/geo/netns.py).

Time to first byte is taken on the server side (the moment any mirror sends
the first body byte of any response), the same way for all three clients, and
client side for webseed. Also: mirror-selection latency for 1,000 listed
mirrors (parse + GeoIP placement + ranking).

Run: ``.venv/bin/python -m bench.mirrors [--size-mib 16] [--slow-rate 2e6] [--repeat 3]
[--no-netns]``.
Writes ``bench/results/mirrors.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
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
from tests.geo.netns import MirrorNamespace, unavailable_reason
from tests.geo.servers import PATH, MirrorServer, free_refused_port

CURL_CONNECT_TIMEOUT = 10
ARIA2_CAP = 90  # seconds; aria2c stuck on a black hole is recorded as not finished


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
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ARIA2_CAP)
        except subprocess.TimeoutExpired:
            return {
                "ok": False,
                "timed_out": True,
                "error": f"did not finish within {ARIA2_CAP} s",
                "first_byte_s": _first_byte(servers, t0),
                "total_s": None,
            }
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
                [
                    exe,
                    "-sS",
                    "--fail",
                    "--connect-timeout",
                    str(CURL_CONNECT_TIMEOUT),
                    "-o",
                    str(out),
                    u + PATH,
                ],
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
            "cmd": f"for u in LIST; do curl -sS --fail --connect-timeout "
            f"{CURL_CONNECT_TIMEOUT} -o data.bin $u && break; done",
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


CLIENTS = (("webseed", run_webseed), ("aria2c", run_aria2c), ("curl", run_curl))


def run_scenario(
    urls: list[str], servers: list[MirrorServer], size: int, digest: str, repeat: int
) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """Each client ``repeat`` times, interleaved; returns (medians, raw runs)."""
    rows: dict[str, list[dict]] = {name: [] for name, _ in CLIENTS}
    for _ in range(repeat):
        for name, fn in CLIENTS:
            rows[name].append(fn(urls, size, digest, servers))

    def med(name: str, key: str) -> float | None:
        # First byte counts even when the run did not finish; total only when verified.
        vals = [
            r[key]
            for r in rows[name]
            if (r.get("ok") or key == "first_byte_s") and r.get(key) is not None
        ]
        return statistics.median(vals) if vals else None

    summary = {
        name: {
            "first_byte_s": med(name, "first_byte_s"),
            "total_s": med(name, "total_s"),
            "ok_runs": sum(1 for r in rows[name] if r.get("ok")),
            "timed_out": sum(1 for r in rows[name] if r.get("timed_out")),
        }
        for name in rows
    }
    return summary, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=16)
    ap.add_argument("--slow-rate", type=float, default=2e6, help="slow mirror, bytes/s")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-netns", action="store_true", help="skip the namespace scenario")
    args = ap.parse_args(argv)
    # Clients closing connections mid-body is part of the scenario, not news.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    size = args.size_mib * 1024 * 1024
    data = random.Random(7).randbytes(size)
    digest = hashlib.sha256(data).hexdigest()
    scenarios: dict[str, Any] = {}

    good = MirrorServer("good", data=data, piece=256 * 1024)
    try:
        # One unrecorded warm-up of each client (imports, first-use code paths, page cache).
        for _, fn in CLIENTS:
            fn([good.url], size, digest, [])

        # 1. Loopback: a refused port, a mirror paced in the app, a good one.
        slow = MirrorServer("slow", rate=args.slow_rate, data=data, piece=64 * 1024)
        try:
            dead = f"http://127.0.0.1:{free_refused_port()}/"
            summary, rows = run_scenario(
                [dead, slow.url, good.url], [slow, good], size, digest, args.repeat
            )
        finally:
            slow.stop()
        scenarios["loopback"] = {
            "mirrors": {
                "dead": "refused port (RST at once)",
                "slow": f"{args.slow_rate:.0f} B/s, paced in the app",
                "good": "loopback, unshaped",
            },
            "summary": summary,
            "runs": rows,
        }

        # 2. Namespace: a black hole (SYNs dropped), a mirror shaped by tc tbf, a good one.
        reason = "--no-netns" if args.no_netns else unavailable_reason()
        if reason is None:
            rate_mbit = args.slow_rate * 8 / 1e6
            ns = MirrorNamespace(3, rate=f"{rate_mbit:g}mbit")
            try:
                shaped = MirrorServer(
                    "good", host=ns.ns_ip, sock=ns.listen(), data=data, piece=64 * 1024
                )
                try:
                    summary, rows = run_scenario(
                        [ns.blackhole_url, shaped.url, good.url],
                        [shaped, good],
                        size,
                        digest,
                        args.repeat,
                    )
                finally:
                    shaped.stop()
            finally:
                ns.close()
            scenarios["netns"] = {
                "mirrors": {
                    "dead": "black hole: SYNs vanish (route into a namespace that does not "
                    "forward)",
                    "slow": f"tc tbf {rate_mbit:g} Mbit/s on a veth into a namespace",
                    "good": "loopback, unshaped",
                },
                "summary": summary,
                "runs": rows,
            }
        else:
            scenarios["netns"] = {"skipped": reason}
    finally:
        good.stop()
    sel = selection_latency()

    doc = {
        "python": platform.python_version(),
        "setup": {
            "file_bytes": size,
            "list_order": ["dead", "slow", "good"],
            "repeat": args.repeat,
            "first_byte": "server side: first body byte sent by any mirror after the client "
            "started (client set-up included for all three)",
            "curl": f"connect timeout {CURL_CONNECT_TIMEOUT} s (its default is 300 s)",
            "aria2c": "defaults (connect timeout 60 s), Metalink with priorities in list order; "
            f"stopped after {ARIA2_CAP} s",
        },
        "scenarios": scenarios,
        "selection_latency": sel,
    }
    path = write_results("mirrors", doc)

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    for name, sc in scenarios.items():
        if "skipped" in sc:
            print(f"\n[{name}] skipped: {sc['skipped']}")
            continue
        print(
            f"\n[{name}] {args.size_mib} MiB; mirrors listed dead ({sc['mirrors']['dead']}), "
            f"slow ({sc['mirrors']['slow']}), good; median of {args.repeat}"
        )
        print(
            table(
                ["client", "first byte", "total", "verified runs"],
                [
                    [
                        n,
                        ms(v["first_byte_s"]),
                        sec(v["total_s"])
                        if v["total_s"] is not None or not v["timed_out"]
                        else f"> {ARIA2_CAP} s",
                        f"{v['ok_runs']}/{args.repeat}",
                    ]
                    for n, v in sc["summary"].items()
                ],
            )
        )
    print(
        f"\nselection for {sel['mirrors']} mirrors: parse {sel['parse_ms']:.1f} ms, "
        f"GeoIP {sel['geoip_ms']:.1f} ms, rank {sel['rank_ms']:.1f} ms, "
        f"total {sel['total_ms']:.1f} ms"
    )
    print(f"wrote {path}")
    ours = [sc["summary"]["webseed"]["ok_runs"] for sc in scenarios.values() if "summary" in sc]
    return 0 if all(ours) else 1


if __name__ == "__main__":
    raise SystemExit(main())
