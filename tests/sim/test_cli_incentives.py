"""`python -m peer.simulate --scenario seeding-incentives` reports both populations side by side."""

from __future__ import annotations

import json

from peer.simulate.cli import main


def test_seeding_incentives_scenario(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--scenario", "seeding-incentives", "--json", "--seed", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in (
        "retention_1d_with",
        "retention_1d_without",
        "retention_7d_with",
        "retention_7d_without",
        "contributor_speedup",
        "free_rider_completed",
    ):
        assert key in report
    assert report["retention_1d_with"] > report["retention_1d_without"]
    assert report["free_rider_completed"] == 1.0
    assert main(["--scenario", "seeding-incentives"]) == 0
    assert "contributor_speedup" in capsys.readouterr().out
    assert main(["--list"]) == 0
    assert "seeding-incentives" in capsys.readouterr().out
