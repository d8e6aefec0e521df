"""Serving benchmark: `webseed serve` against nginx on loopback, same file, same run.

A 1 GiB file (page cache warm) is served by both servers:

1. one large ranged download (``Range: bytes=0-`` of the whole GiB) by curl;
2. 16 concurrent curl clients, each fetching ``--requests`` random ranges of
   1..16 MiB over one kept-alive connection (the same seeded ranges for both).

Reported: MB/s, per-request latency p50/p99, peak RSS (VmHWM) of the server,
and the ratio to nginx. nginx (Debian nginx-light, sendfile on, one worker like
the single-process peer) runs from its own config in a temporary directory on
a free loopback port and is stopped by PID.

    .venv/bin/python -m bench.serve [--requests N] [--size-mib N] [--read-size BYTES]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._util import CACHE, _hwm, table, write_results

MiB = 1024 * 1024
CLIENTS = 16

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_file(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 * MiB)
    with open(path, "wb") as f:
        for i in range(size // len(block)):
            f.write(block[:-8] + i.to_bytes(8, "big"))
        f.write(os.urandom(size % len(block)))


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


class _PeakRss:
    """Samples a process's VmHWM (and its children's) until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(_hwm(p) for p in self.pids))
            time.sleep(0.02)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, sum(_hwm(p) for p in self.pids))


def _curl_single(curl: str, url: str) -> tuple[float, int]:
    out = subprocess.run(
        [curl, "-sSf", "-o", "/dev/null", "-r", "0-", "-w", "%{time_total} %{size_download}", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def _plan(size: int, requests: int, seed: int) -> list[list[tuple[int, int]]]:
    rng = random.Random(seed)
    plans = []
    for _ in range(CLIENTS):
        ranges = []
        for _ in range(requests):
            length = rng.randint(1 * MiB, 16 * MiB)
            start = rng.randrange(0, size - length)
            ranges.append((start, start + length - 1))
        plans.append(ranges)
    return plans


def _curl_many(curl: str, url: str, plans: list[list[tuple[int, int]]]) -> dict[str, float]:
    procs = []
    start = time.perf_counter()
    for ranges in plans:
        cmd = [curl, "-sS"]
        for i, (a, b) in enumerate(ranges):
            if i:
                cmd.append("--next")
            cmd += [
                "-o",
                "/dev/null",
                "-r",
                f"{a}-{b}",
                "-w",
                "%{time_total} %{size_download} %{http_code}\\n",
                url,
            ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    latencies: list[float] = []
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=600)
        for line in out.splitlines():
            t, n, code = line.split()
            if code != "206":
                raise RuntimeError(f"{url}: status {code}")
            latencies.append(float(t))
            total += int(n)
    wall = time.perf_counter() - start
    expected = sum(b - a + 1 for ranges in plans for a, b in ranges)
    if total != expected:
        raise RuntimeError(f"{url}: got {total} bytes, expected {expected}")
    latencies.sort()
    return {
        "mb_s": total / wall / 1e6,
        "wall_s": wall,
        "bytes": total,
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def _start_webseed(root: Path, read_size: int | None) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    code = (
        "import asyncio, sys\n"
        "from webseed.server.app import create_app\n"
        "from webseed.server.standalone import ServerOptions, serve\n"
        "rs = int(sys.argv[2]) or None\n"
        "asyncio.run(serve(create_app(sys.argv[1], read_size=rs), ServerOptions(port=0),"
        " ready=lambda u: print(u, flush=True)))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(root), str(read_size or 0)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    m = re.search(r"http://\S+", proc.stdout.readline())
    if not m:
        proc.kill()
        raise RuntimeError("webseed serve did not start")
    return proc, m.group(0)


def _start_nginx(nginx: str, root: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nginx did not start")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _measure(
    name: str, url: str, pids: list[int], curl: str, plans: list[list[tuple[int, int]]]
) -> dict[str, Any]:
    with _PeakRss(pids) as rss:
        single_s, single_bytes = _curl_single(curl, url)
        many = _curl_many(curl, url, plans)
    return {
        "server": name,
        "single_mb_s": single_bytes / single_s / 1e6,
        "single_s": single_s,
        "concurrent": many,
        "peak_rss_mib": rss.peak / MiB,
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.serve")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--requests", type=int, default=12, help="ranged requests per client")
    ap.add_argument("--read-size", type=int, default=0, help="peer read size (0 = default)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    curl = shutil.which("curl")
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if not curl or not nginx:
        print("bench.serve needs curl and nginx (make system-deps)")
        return 1
    root = CACHE / "serve"
    size = args.size_mib * MiB
    path = root / "big.bin"
    _make_file(path, size)
    _warm(path)
    plans = _plan(size, args.requests, args.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmpdir:
        tmp = Path(tmpdir)
        proc_n, url_n = _start_nginx(nginx, root, tmp)
        try:
            time.sleep(0.2)
            workers = _children(proc_n.pid)
            results.append(
                _measure("nginx", f"{url_n}/big.bin", workers or [proc_n.pid], curl, plans)
            )
        finally:
            proc_n.send_signal(signal.SIGQUIT)  # nginx's graceful stop, by PID
            try:
                proc_n.wait(10)
            except subprocess.TimeoutExpired:
                proc_n.kill()
    proc_w, url_w = _start_webseed(root, args.read_size or None)
    try:
        results.append(_measure("webseed serve", f"{url_w}/big.bin", [proc_w.pid], curl, plans))
    finally:
        proc_w.send_signal(signal.SIGTERM)
        try:
            proc_w.wait(10)
        except subprocess.TimeoutExpired:
            proc_w.kill()
    ngx, ws = results
    rows = []
    for r in results:
        c = r["concurrent"]
        rows.append(
            [
                r["server"],
                f"{r['single_mb_s']:.0f}",
                f"{c['mb_s']:.0f}",
                f"{c['p50_ms']:.1f}",
                f"{c['p99_ms']:.1f}",
                f"{r['peak_rss_mib']:.1f}",
                f"{r['single_mb_s'] / ngx['single_mb_s']:.2f}",
                f"{c['mb_s'] / ngx['concurrent']['mb_s']:.2f}",
            ]
        )
    print(
        f"{args.size_mib} MiB file; {CLIENTS} clients x {args.requests} ranges of 1-16 MiB;"
        " page cache warm; curl clients on the same 2 cores"
    )
    print(
        table(
            [
                "server",
                "1 download MB/s",
                f"{CLIENTS} clients MB/s",
                "p50 ms",
                "p99 ms",
                "peak RSS MiB",
                "single vs nginx",
                "concurrent vs nginx",
            ],
            rows,
        )
    )
    out = write_results(
        "serve",
        {
            "file_mib": args.size_mib,
            "clients": CLIENTS,
            "requests_per_client": args.requests,
            "read_size": args.read_size or None,
            "results": results,
            "ratio_to_nginx": {
                "single": ws["single_mb_s"] / ngx["single_mb_s"],
                "concurrent": ws["concurrent"]["mb_s"] / ngx["concurrent"]["mb_s"],
                "p50": ws["concurrent"]["p50_ms"] / ngx["concurrent"]["p50_ms"],
                "p99": ws["concurrent"]["p99_ms"] / ngx["concurrent"]["p99_ms"],
            },
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
