"""A short version of bench/load.py: `webseed serve --slots 4` under 100 concurrent clients.

The load generator (wrk, or bench.load's asyncio generator without wrk) runs in
its own process against the real server process for 3 seconds.
"""

from __future__ import annotations

from pathlib import Path

from bench import load


def test_100_clients_over_capacity(tmp_path: Path) -> None:
    repo = load.make_repo(tmp_path)
    proc, base = load.start_webseed(repo, slots=4)
    try:
        r = load.measure("webseed --slots 4", proc, base, 100, 3, "auto", tmp_path)
    finally:
        load.stop(proc)
    assert r["alive"] and r["answers_after"], r  # no crash, still serving afterwards
    assert r["socket_errors"] == 0 and r["other_status"] == 0, r  # only 206 and 503
    assert r["served"] > 50, r  # the clients it serves are served
    # 100 clients for 4 slots (+16 waiters): the rest are refused, every refusal says when to retry.
    assert r["refused_503"] > 0 and r["retry_after"] == r["refused_503"], r
    assert r["peak_rss_MiB"] < 256, r  # bounded memory
    assert r["p99_ms"] < 5000, r  # the wait for a slot is bounded (max_wait 1 s)
