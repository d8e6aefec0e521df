"""``make demo``: the main job end to end on a built-in example release.

Everything runs for real, as separate processes on 127.0.0.1:

1. generate a sample release tree, create a publisher key, publish (manifests +
   signed index), verify, and show that a flipped byte is caught;
2. serve the repository from two ``webseed serve`` peers and a plain static
   mirror (``python -m http.server``), and ``webseed get`` the ISO from all of
   them at once, every chunk verified, with the per-source report;
3. block every peer (nothing listens) and show the mirror fallback and its time;
4. publish version 1.1 (``publish`` makes a patch from 1.0) and update a copy of
   1.0 with ``webseed get --from``, fetching only the patch from the swarm.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webseed.cli", *args], capture_output=True, text=True, timeout=300
    )


def _start(args: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and return it with the URL it prints."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if pattern in line:
            return proc, line
    proc.kill()
    raise RuntimeError(f"{args[2:4]} did not start")


def _dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _get(*args: str) -> dict[str, object]:
    out = _run("get", *args, "--json")
    try:
        report: dict[str, object] = json.loads(out.stdout)
    except ValueError:
        report = {"ok": False, "error": out.stderr.strip()[-300:]}
    report["exit"] = out.returncode
    return report


def _sources_table(report: dict[str, object]) -> Table:
    t = Table("source", "kind", "bytes", "requests", "banned")
    sources: list[dict[str, object]] = report.get("sources", [])  # type: ignore[assignment]
    for s in sources:
        banned = str(s["banned"] or "")
        t.add_row(str(s["url"]), str(s["kind"]), f"{s['bytes']:,}", str(s["requests"]), banned)
    return t


def _make_release(src: Path) -> None:
    rng = random.Random(2026)
    files = {
        "releases/demo-os-1.0.iso": 24 * 1024 * 1024,
        "releases/demo-tool-2.3.tar.gz": 3 * 1024 * 1024 + 17,
        "pool/main/d/demo_1.0_amd64.deb": 700_000,
    }
    for path, size in files.items():
        target = src / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(rng.randbytes(size))


def main() -> int:
    """Run the demo; returns the process exit code."""
    work = Path(tempfile.mkdtemp(prefix="webseed-demo-"))
    try:
        return _demo(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _demo(work: Path) -> int:
    src, repo, keys = work / "src", work / "repo", work / "keys"
    console.rule("[bold]webseed demo")
    _make_release(src)
    console.print(f"sample release tree: {src}")
    steps = Table("step", "result", "seconds")

    t = time.perf_counter()
    out = _run("keygen", "--out", str(keys))
    steps.add_row("keygen", out.stdout.splitlines()[-1], f"{time.perf_counter() - t:.2f}")
    t = time.perf_counter()
    out = _run("publish", str(src), "--repo", str(repo), "--key", str(keys / "webseed.key"))
    steps.add_row("publish", out.stdout.strip(), f"{time.perf_counter() - t:.2f}")
    if out.returncode:
        console.print(out.stderr)
        return 1

    # A plain static HTTP server of the repository is a complete mirror, index included.
    server = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(repo),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = server.stdout.readline().split("port ")[1].split()[0]
        url = f"http://127.0.0.1:{port}"
        from webseed.index.client import open_index_once
        from webseed.integrity.keys import load_public_key

        t = time.perf_counter()
        index = open_index_once(url, load_public_key(keys / "webseed.pub"))
        entry = index.lookup("releases/demo-os-1.0.iso")
        manifest = index.fetch_manifest(entry)
        steps.add_row(
            "index over HTTP",
            f"{url}: version {index.version}, {len(index.paths())} artifacts; "
            f"{entry.path}: {manifest.chunk_count} chunks of {manifest.chunk_size // 1024} KiB",
            f"{time.perf_counter() - t:.2f}",
        )
    finally:
        os.kill(server.pid, 15)
        server.wait(timeout=10)

    t = time.perf_counter()
    out = _run("verify", str(repo), "--root-key", str(keys / "webseed.pub"))
    steps.add_row(
        "verify (intact)",
        f"exit {out.returncode}: {out.stdout.strip()}",
        f"{time.perf_counter() - t:.2f}",
    )

    tampered = work / "tampered"
    shutil.copytree(repo, tampered)
    victim = tampered / "releases" / "demo-os-1.0.iso"
    with open(victim, "r+b") as f:
        f.seek(10_000_000)
        byte = f.read(1)
        f.seek(10_000_000)
        f.write(bytes([byte[0] ^ 1]))
    t = time.perf_counter()
    out = _run("verify", str(tampered), "--root-key", str(keys / "webseed.pub"))
    caught = out.returncode == 1 and "chunk" in out.stderr
    first = next((line for line in out.stderr.splitlines() if line.startswith("FAILED")), "")
    steps.add_row(
        "verify (1 byte flipped)",
        f"exit {out.returncode}: {first}",
        f"{time.perf_counter() - t:.2f}",
    )
    console.print(steps)
    if not caught:
        console.print("[red]tampering was NOT detected")
        return 1
    console.print("[green]tampering detected: the flipped chunk is named, nothing was accepted")
    return _swarm(work, src, repo, keys)


def _swarm(work: Path, src: Path, repo: Path, keys: Path) -> int:
    py = sys.executable
    procs: list[subprocess.Popen[str]] = []
    try:
        peers = []
        for i in range(2):
            proc, line = _start(
                [
                    py,
                    "-m",
                    "webseed.cli",
                    "serve",
                    str(repo),
                    "--port",
                    "0",
                    "--state-dir",
                    str(work / f"peer{i}"),
                ],
                "serving",
            )
            procs.append(proc)
            peers.append(line.strip().split(" at ")[-1])
        proc, line = _start(
            [py, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(repo)],
            "port",
        )
        procs.append(proc)
        mirror = f"http://127.0.0.1:{line.split('port ')[1].split()[0]}"
        pub = str(keys / "webseed.pub")
        iso = "releases/demo-os-1.0.iso"

        console.rule("swarm download: 2 peers + 1 mirror")
        swarm = ["--peer", peers[0], "--peer", peers[1], "--mirror", mirror]
        trust = ["--state-dir", str(work / "trust"), "--root-key", pub]
        report = _get(iso, "-o", str(work / "got.iso"), *swarm, *trust)
        if report.get("exit") != 0:
            console.print(f"[red]download failed: {report}")
            return 1
        same = (work / "got.iso").read_bytes() == (src / iso).read_bytes()
        console.print(_sources_table(report))
        console.print(
            f"{report['size']:,} bytes in {report['elapsed_s']:.2f} s, every chunk verified; "
            f"identical to the release: {same}"
        )

        console.rule("every peer blocked: fallback to the mirror")
        t = time.perf_counter()
        report = _get(
            iso,
            "--root-key",
            pub,
            "-o",
            str(work / "fallback.iso"),
            "--peer",
            _dead_url(),
            "--peer",
            _dead_url(),
            "--mirror",
            mirror,
            "--state-dir",
            str(work / "trust"),
            # P2P is blocked: the peers remembered from the download above would be too.
            "--no-discover",
            "--give-up-after",
            "20",
        )
        took = time.perf_counter() - t
        console.print(_sources_table(report))
        phases: dict[str, float] = report.get("phases_s", {})  # type: ignore[assignment]
        console.print(
            f"complete from the mirror in {took:.2f} s with the process start (signed index "
            f"{phases.get('index', 0):.2f} s, transfer {phases.get('transfer', 0):.2f} s; "
            f"exit {report['exit']})"
        )

        console.rule("new version 1.1 through a patch from the swarm")
        new = bytearray((src / iso).read_bytes())
        for offset in range(0, len(new), 3 * 1024 * 1024):
            new[offset : offset + 256] = os.urandom(256)
        (src / "releases" / "demo-os-1.1.iso").write_bytes(bytes(new))
        out = _run("publish", str(src), "--repo", str(repo), "--key", str(keys / "webseed.key"))
        console.print(out.stdout.strip())
        report = _get(
            "releases/demo-os-1.1.iso", "-o", str(work / "got-1.1.iso"),
            "--from", str(work / "got.iso"), *swarm, *trust,
        )  # fmt: skip
        patch = report.get("patch")
        if report.get("exit") != 0 or not isinstance(patch, dict):
            console.print(f"[red]patch update failed: {report}")
            return 1
        same = (work / "got-1.1.iso").read_bytes() == bytes(new)
        console.print(
            f"fetched {patch['patch_bytes']:,} bytes instead of {patch['full_bytes']:,}: "
            f"[bold]{patch['saved_pct']}% saved[/bold]; rebuilt file verified, identical: {same}"
        )
        return 0 if same else 1
    finally:
        for proc in procs:
            os.kill(proc.pid, 15)
            proc.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
