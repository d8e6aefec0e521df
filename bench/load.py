"""Load: a peer (`webseed serve`) under hundreds of concurrent clients, next to nginx.

Every client keeps one connection and asks, again and again, for a 64 KiB
range of a 16 MiB published artifact (what swarm peers do). The load
generator is ``wrk`` (Debian package, installed by ``make system-deps``) in
its own process; without wrk, the asyncio generator of this module runs in a
separate process instead (``--generator asyncio``). Three runs, same file, same
load:

1. ``webseed serve`` with unlimited slots;
2. nginx (one worker, sendfile; Debian nginx-light) for reference;
3. ``webseed serve --slots N`` over capacity: requests beyond N concurrent
   uploads (after a bounded wait) get ``503`` with ``Retry-After``, and the
   requests it does serve keep their throughput: served goodput is compared with
   a run of exactly N clients (at capacity, nobody refused).

Reported: requests/s, p50/p99 latency, peak RSS (VmHWM) of the server, status
counts, whether the server was still alive and answering afterwards.

    .venv/bin/python -m bench.load [--clients 500] [--seconds 10] [--slots 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import _hwm, table, write_results

SIZE = 16 * 1024 * 1024
RANGE = 64 * 1024
PATH = "releases/load-1.0.bin"

WRK_LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; busy = 0; retry = 0; other = 0 end
function response(status, headers, body)
  if status == 200 or status == 206 then ok = ok + 1
  elseif status == 503 then
    busy = busy + 1
    if headers["Retry-After"] or headers["retry-after"] then retry = retry + 1 end
  else other = other + 1 end
end
function done(summary, latency, requests)
  local o, b, r, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); b = b + t:get("busy"); r = r + t:get("retry"); x = x + t:get("other")
  end
  io.write(string.format("STATUS ok=%d busy=%d retry=%d other=%d\n", o, b, r, x))
  io.write(string.format("LAT p50=%d p99=%d max=%d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
  io.write(string.format("TOTAL requests=%d bytes=%d errors=%d\n", summary.requests, summary.bytes,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


# -- servers -------------------------------------------------------------------------


def make_repo(root: Path) -> Path:
    """A published repository holding one 16 MiB artifact (signed index included)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from webseed.index.keys import RoleKeys
    from webseed.index.publisher import Publisher

    src = root / "src" / PATH
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(random.Random(12).randbytes(SIZE))
    Publisher(root / "repo", RoleKeys.single(Ed25519PrivateKey.generate())).publish(root / "src")
    return root / "repo"


def start_webseed(
    repo: Path, slots: int = 0, src: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``webseed serve REPO --port 0 [--slots N]`` as its own process; (process, base URL).

    ``src``: run the webseed found in that source tree (e.g. a checkout of an
    older commit, to compare before/after in the same run) instead of this one.
    """
    cmd = [sys.executable, "-m", "webseed.cli", "serve", str(repo), "--port", "0"]
    if slots:
        cmd += ["--slots", str(slots)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=src,
        env={**os.environ, "PYTHONPATH": str(src)} if src else None,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"at (http://\S+)", line)
        if match:
            return proc, match.group(1).rstrip("/")
        if not line and proc.poll() is not None:
            break
    stop(proc)
    raise RuntimeError("webseed serve did not start")


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
worker_rlimit_nofile 4096;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def start_nginx(root: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """nginx serving ``root`` on a free loopback port, or None if nginx is not installed."""
    import socket

    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root.resolve()))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.05)
    stop(proc)
    return None


def server_pids(proc: subprocess.Popen[Any]) -> list[int]:
    """The process and its children (nginx's worker)."""
    pids = [proc.pid]
    try:
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return pids


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- load generators -----------------------------------------------------------------


def run_wrk(url: str, clients: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """wrk with ``clients`` connections for ``seconds``; parsed figures."""
    script = tmp / "status.lua"
    script.write_text(WRK_LUA)
    threads = max(1, min(2, clients))
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-H",
            f"Range: bytes=0-{RANGE - 1}",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    ).stdout
    status = dict(re.findall(r"(\w+)=(\d+)", out.split("STATUS", 1)[-1].split("\n", 1)[0]))
    lat = dict(re.findall(r"(\w+)=(\d+)", out.split("LAT", 1)[-1].split("\n", 1)[0]))
    total = dict(re.findall(r"(\w+)=(\d+)", out.split("TOTAL", 1)[-1].split("\n", 1)[0]))
    dur = re.search(r"in ([\d.]+)(m?s)", out)
    elapsed = (
        float(dur.group(1)) / (1000 if dur and dur.group(2) == "ms" else 1) if dur else seconds
    )
    if "ok" not in status:
        raise RuntimeError(f"wrk output not understood:\n{out[-1500:]}")
    return _figures(
        int(status["ok"]),
        int(status["busy"]),
        int(status["retry"]),
        int(status["other"]),
        int(total["errors"]),
        elapsed,
        int(lat["p50"]) / 1e6,
        int(lat["p99"]) / 1e6,
        int(status["ok"]) * RANGE,
    )


def _figures(
    ok: int,
    busy: int,
    retry: int,
    other: int,
    errors: int,
    elapsed: float,
    p50: float,
    p99: float,
    ok_bytes: int,
) -> dict[str, Any]:
    return {
        "served": ok,
        "refused_503": busy,
        "retry_after": retry,
        "other_status": other,
        "socket_errors": errors,
        "seconds": round(elapsed, 2),
        "requests_per_s": round((ok + busy + other) / elapsed, 1),
        "served_per_s": round(ok / elapsed, 1),
        "served_MBps": round(ok_bytes / elapsed / 1e6, 1),
        "p50_ms": round(p50 * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
    }


async def _client(
    host: str, port: int, path: str, stop_at: float, out: dict[str, Any], polite: bool
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nRange: bytes=0-{RANGE - 1}\r\n\r\n"
    ).encode()
    reader = writer = None
    while time.monotonic() < stop_at:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            start = time.monotonic()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            length = int(re.search(rb"content-length:\s*(\d+)", lower).group(1))  # type: ignore[union-attr]
            await asyncio.wait_for(reader.readexactly(length), 10)
            out["lat"].append(time.monotonic() - start)
            if status in (200, 206):
                out["ok"] += 1
                out["lat_ok"].append(out["lat"][-1])
            elif status == 503:
                out["busy"] += 1
                retry = re.search(rb"\r\nretry-after:\s*(\d+)", lower)
                out["retry"] += retry is not None
                if polite and retry:  # a well-behaved client waits as told
                    await asyncio.sleep(min(int(retry.group(1)), 5) * random.uniform(0.5, 1.5))
            else:
                out["other"] += 1
            if b"connection: close" in lower:
                writer.close()
                writer = None
        except (TimeoutError, OSError, asyncio.IncompleteReadError, AttributeError, ValueError):
            out["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _generate(url: str, clients: int, seconds: float, polite: bool) -> dict[str, Any]:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    assert m, url
    out: dict[str, Any] = {
        "ok": 0,
        "busy": 0,
        "retry": 0,
        "other": 0,
        "errors": 0,
        "lat": [],
        "lat_ok": [],
    }
    start = time.monotonic()
    stop_at = start + seconds
    await asyncio.gather(
        *(_client(m[1], int(m[2]), m[3], stop_at, out, polite) for _ in range(clients))
    )
    lat = sorted(out["lat"]) or [0.0]
    served = sorted(out["lat_ok"]) or [0.0]
    return {
        "served_p50_ms": round(served[len(served) // 2] * 1000, 2),
        "served_p99_ms": round(served[int(len(served) * 0.99)] * 1000, 2),
        **_figures(
            out["ok"],
            out["busy"],
            out["retry"],
            out["other"],
            out["errors"],
            time.monotonic() - start,
            lat[len(lat) // 2],
            lat[int(len(lat) * 0.99)],
            out["ok"] * RANGE,
        ),
    }


def run_asyncio(url: str, clients: int, seconds: float, polite: bool = False) -> dict[str, Any]:
    """The asyncio generator of this module, in a separate process (not the server's)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--generate",
            url,
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
            *(["--polite"] if polite else []),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def generate(url: str, clients: int, seconds: float, generator: str, tmp: Path) -> dict[str, Any]:
    """Run the chosen generator (``wrk``, ``asyncio``, ``polite`` or ``auto``) against ``url``.

    ``polite`` is the asyncio generator with clients that honour ``Retry-After``.
    """
    if generator == "polite":
        result = run_asyncio(url, clients, seconds, polite=True)
        result["generator"] = "asyncio, honours Retry-After"
    elif generator == "wrk" or (generator == "auto" and shutil.which("wrk")):
        result = run_wrk(url, clients, seconds, tmp)
        result["generator"] = "wrk"
    else:
        result = run_asyncio(url, clients, seconds)
        result["generator"] = "asyncio"
    result["clients"] = clients
    return result


def measure(
    name: str,
    proc: subprocess.Popen[Any],
    base: str,
    clients: int,
    seconds: float,
    generator: str,
    tmp: Path,
) -> dict[str, Any]:
    """Load ``base/PATH`` and add the server's peak RSS and liveness afterwards."""
    import httpx

    result = generate(f"{base}/{PATH}", clients, seconds, generator, tmp)
    result["server"] = name
    result["peak_rss_MiB"] = round(max(_hwm(p) for p in server_pids(proc)) / 2**20, 1)
    result["alive"] = proc.poll() is None
    try:
        probe = httpx.get(f"{base}/{PATH}", headers={"Range": "bytes=0-99"}, timeout=10)
        result["answers_after"] = probe.status_code in (206, 503)
    except httpx.HTTPError:
        result["answers_after"] = False
    return result


def over_capacity_runs(
    name: str,
    repo: Path,
    clients: int,
    seconds: float,
    slots: int,
    generator: str,
    tmp: Path,
    src: Path | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """At capacity, over capacity (ignoring / honouring Retry-After); rows and the summary."""
    proc, base = start_webseed(repo, slots, src)
    try:
        at_cap = measure(name, proc, base, slots, seconds, generator, tmp)
        over = measure(name, proc, base, clients, seconds, generator, tmp)
        # The same overload from clients that back off as Retry-After tells them to.
        polite = measure(name, proc, base, clients, seconds, "polite", tmp)
    finally:
        stop(proc)
    cap = at_cap["served_MBps"]
    return [at_cap, over, polite], {
        "refused_503": over["refused_503"] + polite["refused_503"],
        "all_503_have_retry_after": over["refused_503"] == over["retry_after"]
        and polite["refused_503"] == polite["retry_after"],
        # Served bytes/s under overload over served bytes/s with exactly `slots` clients.
        "goodput_vs_at_capacity_ignoring_retry_after": round(
            over["served_MBps"] / cap if cap else 0.0, 3
        ),
        "goodput_vs_at_capacity_honouring_retry_after": round(
            polite["served_MBps"] / cap if cap else 0.0, 3
        ),
    }


def run(
    clients: int,
    seconds: float,
    slots: int,
    generator: str = "auto",
    with_nginx: bool = True,
    baseline: Path | None = None,
) -> dict[str, Any]:
    """The three runs (plus the at-capacity reference); the results dict.

    ``baseline``: also run the over-capacity runs with the webseed of that
    source tree (before/after comparison in the same run).
    """
    tmp = Path(tempfile.mkdtemp(prefix="webseed-load-"))
    try:
        repo = make_repo(tmp)
        rows: list[dict[str, Any]] = []
        proc, base = start_webseed(repo)
        try:
            rows.append(measure("webseed", proc, base, clients, seconds, generator, tmp))
        finally:
            stop(proc)
        if with_nginx:
            (tmp / "nginx").mkdir()
            started = start_nginx(repo, tmp / "nginx")
            if started:
                nproc, nbase = started
                try:
                    rows.append(measure("nginx", nproc, nbase, clients, seconds, generator, tmp))
                finally:
                    stop(nproc)
        before: dict[str, Any] | None = None
        if baseline is not None:
            old_rows, before = over_capacity_runs(
                f"before --slots {slots}", repo, clients, seconds, slots, generator, tmp, baseline
            )
            rows += old_rows
        new_rows, summary = over_capacity_runs(
            f"webseed --slots {slots}", repo, clients, seconds, slots, generator, tmp
        )
        rows += new_rows
        res: dict[str, Any] = {
            "clients": clients,
            "seconds": seconds,
            "slots": slots,
            "range_bytes": RANGE,
            "file_bytes": SIZE,
            "runs": rows,
            "over_capacity": summary,
        }
        if before is not None:
            res["over_capacity_before"] = before
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--slots", type=int, default=32)
    ap.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    ap.add_argument(
        "--baseline",
        type=Path,
        metavar="SRC",
        help="also run the --slots runs with the webseed of this source tree (before/after)",
    )
    ap.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--polite", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate:  # the separate load-generator process
        print(
            json.dumps(
                asyncio.run(_generate(args.generate, args.clients, args.seconds, args.polite))
            )
        )
        return 0
    res = run(args.clients, args.seconds, args.slots, args.generator, baseline=args.baseline)
    cols = [
        "server",
        "clients",
        "requests_per_s",
        "served_MBps",
        "p50_ms",
        "p99_ms",
        "peak_rss_MiB",
        "served",
        "refused_503",
        "retry_after",
        "socket_errors",
        "alive",
    ]
    print(table(cols, [[r[c] for c in cols] for r in res["runs"]]))
    if "over_capacity_before" in res:
        print("before:", json.dumps(res["over_capacity_before"]))
    print(json.dumps(res["over_capacity"]))
    write_results("load", res)
    ok = all(r["alive"] and r["answers_after"] for r in res["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
