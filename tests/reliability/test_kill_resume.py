"""kill -9 of a downloading `webseed get`, a peer killed mid-transfer (real processes).

Needs the swarm engine (`webseed get`): skipped until branch swarm is on main.
The long version (20 kills) is in bench/soak.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.prereq import missing, needs
from tests.reliability import faults

pytestmark = needs(not faults.available(), "needs `webseed get` (peer.engine)")
MiB = 1024 * 1024


def test_kill_9_at_random_moments_then_resume(tmp_path: Path) -> None:
    pub = faults.Published(tmp_path, 16 * MiB)
    with faults.Peer(pub.repo, rate="6M") as peer:  # ~2 s of transfer: room to kill mid-way
        res = faults.kill_resume(pub, peer.url, tmp_path, cycles=1, window=1.5, seed=1, start=0.5)
    print(res)
    assert res["all_correct"], res
    assert res["all_within_refetch_bound"], res
    assert any(0 < r["verified_at_kill"] < r["chunks"] for r in res["runs"]), res  # killed mid-way


def test_peer_killed_mid_transfer(tmp_path: Path) -> None:
    import subprocess
    import time

    pub = faults.Published(tmp_path, 12 * MiB, seed=2)
    out = tmp_path / "got.iso"
    with faults.Peer(pub.repo, rate="6M") as slow, faults.Peer(pub.repo, rate="6M") as doomed:
        proc = subprocess.Popen(
            faults.get_cmd(pub, out, [slow.url, doomed.url]),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=faults.ROOT,
        )
        part = out.with_name(out.name + ".part")
        deadline = time.monotonic() + 60
        while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)  # mid-transfer: both peers are sending
        doomed.kill()  # SIGKILL: connections reset mid-body
        stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout
    assert out.read_bytes() == pub.data


@pytest.mark.netns
def test_network_partition_mid_transfer(tmp_path: Path) -> None:
    import os
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("needs root and ip(8) for a network namespace")
    pub = faults.Published(tmp_path, 12 * MiB, seed=3)
    try:
        res = faults.partition_mid_transfer(pub, tmp_path, cut_for=3.0)
    except OSError as exc:
        missing(f"cannot make a network namespace here: {exc}")
    assert res["ok"], res
