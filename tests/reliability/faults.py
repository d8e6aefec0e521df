"""Fault scenarios with real processes, shared by the tests (short) and bench/soak.py (long).

All need the download engine (`webseed get`, branch swarm); they report
``available() == False`` until it is on main.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from webseed.manifest import Manifest
from webseed.storage import PartialArtifact

ROOT = Path(__file__).resolve().parents[2]
PATH = "releases/fault-1.0.iso"


def available() -> bool:
    """`webseed get` exists (the swarm engine is merged)."""
    return importlib.util.find_spec("webseed.commands.get") is not None


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the webseed CLI in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "webseed.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=check,
        cwd=ROOT,
    )


class Published:
    """A published repository with one artifact of ``size`` random bytes, keygen'd via the CLI."""

    def __init__(self, root: Path, size: int, seed: int = 1) -> None:
        self.root = root
        src = root / "src" / PATH
        src.parent.mkdir(parents=True, exist_ok=True)
        self.data = random.Random(seed).randbytes(size)
        src.write_bytes(self.data)
        self.repo = root / "repo"
        # In-process CLI (no interpreter start-up): keygen and publish as a publisher would.
        from typer.testing import CliRunner

        from webseed.cli import app

        key = str(root / "k" / "webseed.key")
        for args in (
            ["keygen", "--out", str(root / "k")],
            ["publish", str(root / "src"), "--repo", str(self.repo), "--key", key],
        ):
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 0, res.output
        self.pub = root / "k" / "webseed.pub"
        mdir = self.repo / ".well-known" / "webseed" / "manifests"
        manifests = [Manifest.parse(p.read_bytes()) for p in mdir.glob("*.json")]
        self.manifest = next(m for m in manifests if m.path == PATH)


class Peer:
    """`webseed serve REPO --port 0 [--rate R]` as a process; ``url`` once it listens."""

    def __init__(self, repo: Path, rate: str = "0") -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webseed.cli",
                "serve",
                str(repo),
                "--port",
                "0",
                "--rate",
                rate,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"at (http://\S+)", line)
        if not match:
            self.kill()
            raise RuntimeError(f"webseed serve did not start: {line!r}")
        self.url = match.group(1).rstrip("/")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def get_cmd(pub: Published, out: Path, peers: list[str], mirrors: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    cmd = [
        sys.executable,
        "-m",
        "webseed.cli",
        "get",
        PATH,
        "--root-key",
        str(pub.pub),
        "-o",
        str(out),
        "--state-dir",
        str(out.parent / "state"),
        "--json",
        "--give-up-after",
        "30",
    ]
    for p in peers:
        cmd += ["--peer", p]
    for m in mirrors:
        cmd += ["--mirror", m]
    return cmd


def run_get(pub: Published, out: Path, peers: list[str], mirrors: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """`webseed get ... --json` to completion; its JSON report (``ok`` false on failure)."""
    r = subprocess.run(
        get_cmd(pub, out, peers, mirrors), capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    lines = r.stdout.strip().splitlines()
    if not lines:
        return {"ok": False, "error": r.stderr[-1000:], "exit": r.returncode}
    return dict(json.loads(lines[-1]))


def verified_chunks(pub: Published, out: Path) -> int:
    """Chunks the partial download of ``out`` holds as verified (as a resume would see them)."""
    part = out.with_name(out.name + ".part")
    if not part.exists():
        return 0
    with PartialArtifact(part, pub.manifest) as p:
        return p.verified_count


def kill_resume(
    pub: Published,
    peer_url: str,
    work: Path,
    cycles: int,
    window: float,
    seed: int = 0,
    start: float = 0.0,
) -> dict[str, Any]:
    """``cycles`` times: start `webseed get`, SIGKILL it at a random moment, re-run to the end.

    The moment is uniform in ``[start, window]`` seconds after the transfer began.

    Each re-run must give the right file and fetch at most the chunks that were
    not verified when the process died (the in-flight ones and those never started).
    """
    rnd = random.Random(seed)
    m = pub.manifest
    rows = []
    for i in range(cycles):
        out = work / f"got{i}.iso"
        proc = subprocess.Popen(
            get_cmd(pub, out, [peer_url]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        # Start the clock when the transfer starts (the .part file appears): the
        # process start and the index check before it take seconds on a busy machine.
        part = out.with_name(out.name + ".part")
        deadline = time.monotonic() + 60
        while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        at = rnd.uniform(start, window)
        time.sleep(at)
        finished_first = proc.poll() is not None
        if not finished_first:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Killed after the finalising rename: the output is complete and verified already.
        finalized = out.exists()
        kept = m.chunk_count if finished_first or finalized else verified_chunks(pub, out)
        report = (
            run_get(pub, out, [peer_url])
            if not finished_first
            else {"ok": True, "fetched_bytes": 0, "resumed_chunks": kept}
        )
        correct = out.exists() and out.read_bytes() == pub.data
        refetch_allowed = (
            sum(m.chunk_range(j)[1] - m.chunk_range(j)[0] for j in range(kept, m.chunk_count))
            if kept < m.chunk_count
            else 0
        )
        rows.append(
            {
                "kill_at_s": round(at, 3),
                "finished_before_kill": finished_first,
                "verified_at_kill": kept,
                "output_in_place_at_kill": finalized,
                "chunks": m.chunk_count,
                "resumed_chunks": report.get("resumed_chunks"),
                "refetched_bytes": report.get("fetched_bytes"),
                "ok": bool(report.get("ok")) and correct,
                # Every verified chunk survived, and the re-run fetched no more than what was missing.
                "no_extra_refetch": report.get("resumed_chunks", -1) >= kept
                and (report.get("fetched_bytes") or 0) <= refetch_allowed + m.chunk_size,
            }
        )
        for f in (
            out,
            out.with_name(out.name + ".part"),
            out.with_name(out.name + ".part.journal"),
        ):
            f.unlink(missing_ok=True)
    return {
        "cycles": cycles,
        "size": len(pub.data),
        "chunk_size": m.chunk_size,
        "runs": rows,
        "all_correct": all(r["ok"] for r in rows),
        "all_within_refetch_bound": all(r["no_extra_refetch"] for r in rows),
        "data_lost_bytes": sum(0 if r["ok"] else len(pub.data) for r in rows),
    }


class Partitionable:
    """A network namespace joined to the host by a veth pair whose host end can be set down.

    The peer inside is reachable at ``self.ns_ip`` (198.19.X.2, in the 198.18.0.0/15
    benchmarking range); :meth:`cut` / :meth:`heal` set the host end down / up, a
    partition in which packets vanish (no reset), as when a link fails.
    """

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = f"wsrel{pid}"
        self.host_if, self.ns_if = f"wrh{pid % 100000}", f"wrn{pid % 100000}"
        net = f"198.19.{pid % 250}"
        self.host_ip, self.ns_ip = f"{net}.1", f"{net}.2"
        steps = [
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.ns],
            ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "ip",
                "addr",
                "add",
                f"{self.ns_ip}/24",
                "dev",
                self.ns_if,
            ],
            ["ip", "netns", "exec", self.ns, "ip", "link", "set", self.ns_if, "up"],
            ["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"],
        ]
        for cmd in steps:
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                self.close()
                raise OSError(f"{' '.join(cmd)}: {r.stderr.strip()}")

    def serve(self, repo: Path, rate: str) -> subprocess.Popen[str]:
        """`webseed serve` inside the namespace; the process (its URL via :func:`peer_url`)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-m", "webseed.cli", "serve",
             str(repo), "--host", self.ns_ip, "--port", "0", "--rate", rate],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        )  # fmt: skip

    def cut(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, "down"], check=True)

    def heal(self) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, "up"], check=True)

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def peer_url(proc: subprocess.Popen[str]) -> str:
    """The URL a `webseed serve` process printed when it started listening."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"at (http://\S+)", line)
    if not match:
        raise RuntimeError(f"webseed serve did not start: {line!r}")
    return match.group(1).rstrip("/")


def partition_mid_transfer(pub: Published, work: Path, cut_for: float) -> dict[str, Any]:
    """Download from a namespaced peer plus a slow mirror; cut the peer's link mid-transfer.

    The link is healed after ``cut_for`` seconds. The download must complete with
    the right file, from the mirror and/or the healed peer.
    """
    net = Partitionable()
    out = work / "partitioned.iso"
    proc = None
    try:
        peer_proc = net.serve(pub.repo, rate="8M")
        try:
            url = peer_url(peer_proc)
            with Peer(pub.repo, rate="2M") as mirror:
                proc = subprocess.Popen(
                    get_cmd(pub, out, [url], [mirror.url]),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                    cwd=ROOT,
                )
                part = out.with_name(out.name + ".part")
                deadline = time.monotonic() + 60
                while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.5)
                net.cut()
                time.sleep(cut_for)
                net.heal()
                stdout, _ = proc.communicate(timeout=180)
        finally:
            if peer_proc.poll() is None:
                os.kill(peer_proc.pid, signal.SIGKILL)
            peer_proc.wait(timeout=10)
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        net.close()
    lines = stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {"ok": False}
    return {
        "ok": bool(report.get("ok")) and out.exists() and out.read_bytes() == pub.data,
        "cut_for_s": cut_for,
        "bytes_by_source": {s["kind"]: s["bytes"] for s in report.get("sources", [])},
        "elapsed_s": report.get("elapsed_s"),
    }
