"""``make demo``: the main job end to end on a built-in example release.

Generates a sample release tree in a temporary directory, creates a publisher
key, publishes the tree (manifests + signed index), serves the repository with
a plain static HTTP server (a complete mirror), verifies the index over HTTP
with the pinned key, then tampers with a copy of the repository and shows that
verification catches it (exit code, alert). Everything runs for real.
"""

from __future__ import annotations

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
        from webseed.index.client import fresh_state_dir, open_index
        from webseed.integrity.keys import load_public_key

        t = time.perf_counter()
        index = open_index(url, load_public_key(keys / "webseed.pub"), state_dir=fresh_state_dir())
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
