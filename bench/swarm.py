"""Swarm benchmark: one artifact from three rate-limited sources, webseed vs aria2c vs curl.

Three source hosts in network namespaces this bench creates (``wsb-s1..3``,
198.18.{1,2,3}.2, veth pairs to the host), each running the real nginx over
the same published repository, shaped with ``tc tbf`` on the sender side
(default 200/100/50 Mbit/s) and ``netem`` delay on the host side (2/10/20 ms
round trip). In the same run, on the same 1 GiB artifact:

- ``webseed get`` with all three as mirrors (signed index, every chunk verified),
- ``aria2c`` with a Metalink v4 listing the same three URLs (the settings the
  anchors measured best, plus ``-x16 -s16``; the better run is reported),
- ``curl`` from the fastest source.

Each is reported as a percentage of the sum of the nominal link rates and of
the TCP payload those links can carry: tbf counts whole Ethernet frames, so at
the usual 1500-byte MTU payload tops out at 1448/1514 = 95.6% of nominal, at a
9000-byte (jumbo) MTU at 8948/9014 = 99.3%. The comparison runs once per MTU
given (``--mtus``, default both).
Then peak RSS of ``webseed get`` for a 256 MiB and a 4 GiB artifact (three
unshaped nginx sources on loopback) shows memory does not grow with size.

Without root / network namespaces it runs everything on loopback, unshaped
(throughput in MB/s only). ``python -m bench.swarm --help`` for options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench._util import CACHE, precompile, run_timed, table, write_results

MiB = 1024 * 1024


def payload_limit(mtu: int) -> float:
    """Fraction of a tbf rate left for TCP payload: IPv4 + TCP with timestamps = 52
    bytes of headers per packet, 14 of Ethernet header per frame."""
    return (mtu - 52) / (mtu + 14)


PREFIX = "wsb"
REPO_PATH = "releases/bench-{size}.iso"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=120)


# -- test data --------------------------------------------------------------------------


def _fill(path: Path, size: int) -> None:
    """Incompressible, with every MiB distinct (so chunks differ), written fast."""
    block = os.urandom(16 * MiB)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            n = min(len(block), size - written)
            stamp = hashlib.sha256(i.to_bytes(8, "little")).digest()
            view = bytearray(block[:n])
            for off in range(0, n, MiB):
                view[off : off + 32] = stamp[: min(32, n - off)]
                stamp = hashlib.sha256(stamp).digest()
            f.write(view)
            written += n
            i += 1


def prepare_repo(size_mib: int) -> tuple[Path, Path, str]:
    """A published repository with one artifact of ``size_mib`` MiB (cached in bench/cache)."""
    base = CACHE / "swarm"
    keys = base / "keys"
    if not (keys / "webseed.key").exists():
        _ws("keygen", "--out", str(keys))
    repo_path = REPO_PATH.format(size=size_mib)
    repo = base / f"repo-{size_mib}"
    if not (repo / ".published").exists():
        src = base / f"src-{size_mib}"
        log(f"creating a {size_mib} MiB artifact and publishing it ...")
        _fill(src / repo_path, size_mib * MiB)
        _ws("publish", str(src), "--repo", str(repo), "--key", str(keys / "webseed.key"))
        shutil.rmtree(src)
        (repo / ".published").touch()
    return repo, keys / "webseed.pub", repo_path


def _ws(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "webseed.cli", *args], check=True, capture_output=True)


# -- sources ----------------------------------------------------------------------------


@contextmanager
def nginx(root: Path, addr: str, port: int, netns: str | None = None):  # type: ignore[no-untyped-def]
    """The real nginx serving ``root`` at ``addr:port`` (inside ``netns`` if given)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    d = Path(tempfile.mkdtemp(prefix="wsb-nginx-"))
    user = "user root;" if os.geteuid() == 0 else ""
    (d / "nginx.conf").write_text(
        f"""{user}
daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen {addr}:{port}; root {root}; }}
}}
"""
    )
    cmd = [binary, "-c", str(d / "nginx.conf"), "-p", str(d)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(cmd)
    try:
        _wait(addr, port, netns)
        yield f"http://{addr}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def _wait(addr: str, port: int, netns: str | None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((addr, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx on {addr}:{port} did not start")


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        return False
    probe = f"{PREFIX}-probe"
    ok = sh("ip", "netns", "add", probe, check=False).returncode == 0
    sh("ip", "netns", "del", probe, check=False)
    return ok


@contextmanager
def topology(rates_mbit: list[int], rtts_ms: list[int], mtu: int = 1500):  # type: ignore[no-untyped-def]
    """Namespaces ``wsb-s<i>`` with 198.18.<i>.2, shaped at ``rates_mbit`` (sender side)."""
    names = [f"{PREFIX}-s{i + 1}" for i in range(len(rates_mbit))]
    _teardown(names)
    delays_ok = True
    try:
        for i, (rate, rtt) in enumerate(zip(rates_mbit, rtts_ms, strict=True), start=1):
            ns, host, peer = names[i - 1], f"{PREFIX}-h{i}", f"{PREFIX}-n{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host, "mtu", str(mtu), "type", "veth", "peer", "name", peer,
               "mtu", str(mtu))  # fmt: skip
            sh("ip", "link", "set", peer, "netns", ns)
            sh("ip", "addr", "add", f"198.18.{i}.1/24", "dev", host)
            sh("ip", "link", "set", host, "up")
            sh("ip", "-n", ns, "addr", "add", f"198.18.{i}.2/24", "dev", peer)
            sh("ip", "-n", ns, "link", "set", peer, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # Rate limit where the data leaves the source; delay on the way back (ACKs).
            burst = max(32 * 1024, rate * 1_000_000 // 8 // 250)
            sh("tc", "-n", ns, "qdisc", "add", "dev", peer, "root", "tbf",
               "rate", f"{rate}mbit", "burst", str(burst), "latency", "50ms")  # fmt: skip
            if rtt and delays_ok:
                r = sh("tc", "qdisc", "add", "dev", host, "root", "netem", "delay", f"{rtt}ms",
                       "limit", "100000", check=False)  # fmt: skip
                if r.returncode:
                    log(f"netem unavailable ({r.stderr.strip()}): no added delay")
                    delays_ok = False
        yield names, delays_ok
    finally:
        _teardown(names)


def _teardown(names: list[str]) -> None:
    for i, ns in enumerate(names, start=1):
        sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", f"{PREFIX}-h{i}", check=False)


# -- the contenders -------------------------------------------------------------------------


def run_webseed(urls: list[str], pub: Path, repo_path: str, out: Path) -> dict[str, Any]:
    state = tempfile.mkdtemp(prefix="wsb-state-")
    cmd = [sys.executable, "-m", "webseed.cli", "get", repo_path, "--root-key", str(pub),
           "-o", str(out), "--json", "--state-dir", state]  # fmt: skip
    for u in urls:
        cmd += ["--mirror", u]
    try:
        secs, rss, text = run_timed(cmd)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    report = json.loads(text.strip().splitlines()[-1])
    return {"seconds": secs, "rss": rss, "transfer_seconds": report["elapsed_s"], "report": report}


def run_aria2(
    urls: list[str], repo: Path, repo_path: str, out: Path, opts: list[str]
) -> dict[str, Any]:
    size = (repo / repo_path).stat().st_size
    digest = _sha256(repo / repo_path)
    meta = out.parent / "bench.meta4"
    entries = "\n".join(
        f'    <url priority="{i}">{u}/{repo_path}</url>' for i, u in enumerate(urls, 1)
    )
    meta.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<metalink xmlns="urn:ietf:params:xml:ns:metalink">
  <file name="{out.name}">
    <size>{size}</size>
    <hash type="sha-256">{digest}</hash>
{entries}
  </file>
</metalink>
"""
    )
    cmd = ["aria2c", "-M", str(meta), "-d", str(out.parent), "--file-allocation=none",
           "--allow-overwrite=true", "--auto-file-renaming=false", "--console-log-level=warn",
           "--summary-interval=0", "--check-certificate=false", *opts]  # fmt: skip
    secs, rss, _ = run_timed(cmd)
    meta.unlink()
    return {"seconds": secs, "rss": rss, "options": " ".join(opts)}


def run_curl(url: str, repo_path: str, out: Path) -> dict[str, Any]:
    secs, rss, _ = run_timed(["curl", "-sS", "--fail", "-o", str(out), f"{url}/{repo_path}"])
    return {"seconds": secs, "rss": rss}


_DIGESTS: dict[Path, str] = {}


def _sha256(path: Path) -> str:
    if path not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(8 * MiB):
                h.update(block)
        _DIGESTS[path] = h.hexdigest()
    return _DIGESTS[path]


def _check(out: Path, repo: Path, repo_path: str) -> None:
    if _sha256(out) != _sha256(repo / repo_path):
        raise RuntimeError(f"{out} differs from the published artifact")
    _DIGESTS.pop(out, None)
    out.unlink()


ARIA2_SETTINGS = [
    ["-s12", "-x4", "-k1M", "--uri-selector=adaptive"],
    ["-s16", "-x16", "-k1M", "--uri-selector=adaptive"],
]


def compare(urls: list[str], repo: Path, pub: Path, repo_path: str, capacity: float | None,
            work: Path, mtu: int = 1500) -> list[dict[str, Any]]:  # fmt: skip
    """Run the three contenders; ``capacity``: summed nominal link rate in bytes/s."""
    size = (repo / repo_path).stat().st_size
    rows: list[dict[str, Any]] = []
    out = work / "out.iso"

    def row(name: str, r: dict[str, Any], cap: float | None) -> None:
        rate = size / r["seconds"]
        r.update(tool=name, mtu=mtu, bytes_per_s=rate, pct_of_sum=100 * rate / cap if cap else None)
        r["pct_of_payload"] = r["pct_of_sum"] / payload_limit(mtu) if cap else None
        if "transfer_seconds" in r:
            r["transfer_pct_of_sum"] = 100 * size / r["transfer_seconds"] / cap if cap else None
        rows.append(r)
        pct = f" = {r['pct_of_sum']:.1f}% of the sum" if cap else ""
        log(f"  {name}: {r['seconds']:.2f} s, {rate / 1e6:.1f} MB/s{pct}")

    log("webseed get (3 sources) ...")
    r = run_webseed(urls, pub, repo_path, out)
    _check(out, repo, repo_path)
    row("webseed get (3 sources)", r, capacity)
    best: dict[str, Any] | None = None
    for opts in ARIA2_SETTINGS:
        log(f"aria2c {' '.join(opts)} (Metalink, 3 sources) ...")
        r = run_aria2(urls, repo, repo_path, out, opts)
        _check(out, repo, repo_path)
        log(f"  {r['seconds']:.2f} s")
        if best is None or r["seconds"] < best["seconds"]:
            best = r
    assert best is not None
    row(f"aria2c {best['options']} (Metalink, 3 sources)", best, capacity)
    log("curl (fastest source) ...")
    r = run_curl(urls[0], repo_path, out)
    _check(out, repo, repo_path)
    row("curl (fastest source)", r, capacity)
    return rows


def rss_by_size(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    """Peak RSS of ``webseed get`` per artifact size, three unshaped loopback sources."""
    rows = []
    for size_mib in sizes:
        repo, pub, repo_path = prepare_repo(size_mib)
        with ExitStack() as stack:
            urls = [stack.enter_context(nginx(repo, "127.0.0.1", _free_port())) for _ in range(3)]
            log(f"webseed get {size_mib} MiB on loopback (peak RSS) ...")
            out = work / "rss.iso"
            r = run_webseed(urls, pub, repo_path, out)
            if out.stat().st_size != size_mib * MiB:
                raise RuntimeError("incomplete download")
            out.unlink()
        rows.append({"size_mib": size_mib, "peak_rss": r["rss"], "seconds": r["seconds"]})
        log(f"  peak RSS {r['rss'] / MiB:.1f} MiB in {r['seconds']:.2f} s")
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.swarm", description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rates", default="200,100,50", help="Mbit/s per source")
    ap.add_argument("--rtts", default="2,10,20", help="round-trip delay (ms) per source")
    ap.add_argument("--mtus", default="1500,9000", help="link MTU(s); one comparison each")
    ap.add_argument("--loopback", action="store_true", help="no namespaces, no shaping")
    ap.add_argument("--rss-sizes", default="256,4096", help="MiB; empty to skip")
    args = ap.parse_args(argv)
    rates = [int(x) for x in args.rates.split(",")]
    rtts = [int(x) for x in args.rtts.split(",")]
    mtus = [int(x) for x in args.mtus.split(",")]
    precompile()
    repo, pub, repo_path = prepare_repo(args.size_mib)
    work = Path(tempfile.mkdtemp(prefix="wsb-work-", dir=CACHE))
    results: dict[str, Any] = {"size_mib": args.size_mib}
    try:
        shaped = not args.loopback and netns_available()
        if shaped:
            capacity = sum(rates) * 1e6 / 8
            results.update(mode="netns+tbf", rates_mbit=rates, rtts_ms=rtts, mtus=mtus)
            rows = []
            for mtu in mtus:
                log(f"-- links with MTU {mtu} --")
                with topology(rates, rtts, mtu) as (names, delays_ok), ExitStack() as stack:
                    if not delays_ok:
                        results["rtts_ms"] = "not applied (no netem in this kernel)"
                    urls = [
                        stack.enter_context(nginx(repo, f"198.18.{i}.2", 8080, ns))
                        for i, ns in enumerate(names, start=1)
                    ]
                    rows += compare(urls, repo, pub, repo_path, capacity, work, mtu)
        else:
            log("no network namespaces (need root): loopback, unshaped")
            results.update(mode="loopback")
            with ExitStack() as stack:
                urls = [stack.enter_context(nginx(repo, "127.0.0.1", _free_port())) for _ in rates]
                rows = compare(urls, repo, pub, repo_path, None, work)
        results["runs"] = rows
        sizes = [int(x) for x in args.rss_sizes.split(",") if x]
        results["rss"] = rss_by_size(sizes, work) if sizes else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = ["MTU", "tool", "seconds", "MB/s", "% of links", "% of payload cap.", "RSS MiB"]
    body = [
        [
            r["mtu"],
            r["tool"],
            f"{r['seconds']:.2f}",
            f"{r['bytes_per_s'] / 1e6:.1f}",
            "-" if r["pct_of_sum"] is None else f"{r['pct_of_sum']:.1f}",
            "-" if r["pct_of_payload"] is None else f"{r['pct_of_payload']:.1f}",
            f"{r['rss'] / MiB:.1f}",
        ]
        for r in results["runs"]
    ]
    limits = ", ".join(f"{100 * payload_limit(m):.1f}% at MTU {m}" for m in mtus)
    print(f"\n{args.size_mib} MiB, {results['mode']}"
          + (f", links {args.rates} Mbit/s (TCP payload capacity {limits})"
             if results["mode"] != "loopback" else ""))  # fmt: skip
    print(table(head, body))
    webseed_runs = [r for r in results["runs"] if r["tool"].startswith("webseed")]
    for ws in webseed_runs:
        if ws.get("transfer_pct_of_sum"):
            print(
                f"webseed transfer only (after start-up and index check), MTU {ws['mtu']}: "
                f"{ws['transfer_seconds']:.2f} s = {ws['transfer_pct_of_sum']:.1f}% of links"
            )
    if results["rss"]:
        print()
        print(table(["artifact", "peak RSS MiB", "seconds"],
                    [[f"{r['size_mib']} MiB", f"{r['peak_rss'] / MiB:.1f}", f"{r['seconds']:.2f}"]
                     for r in results["rss"]]))  # fmt: skip
    for r in results["runs"]:
        if "report" in r:
            # Keep the per-source split and phases, not the whole per-source report.
            rep = r.pop("report")
            r["phases_s"] = rep.get("phases_s")
            r["bytes_by_source"] = {s["url"]: s["bytes"] for s in rep.get("sources", [])}
    path = write_results("swarm", results)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
