"""The seeding-incentives scenario (small population) and ``webseed stats``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from peer.incentives import behaviour
from peer.incentives.behaviour import Params, run_scenario
from peer.incentives.identity import load_or_create
from peer.incentives.ledger import Ledger
from peer.incentives.recognition import Recognition
from peer.incentives.stats import default_state_dir
from webseed.cli import app


@pytest.fixture(scope="module")
def result():
    return run_scenario(Params(users=120, releases=7), seed=3)


def test_incentives_meet_targets(result):
    # Same population, same arrivals; only the slot policy differs.
    assert result["retention_1d_with"] > 2 * result["retention_1d_without"]
    assert result["retention_7d_with"] > result["retention_7d_without"]
    assert result["contributor_speedup"] >= 1.6  # small population: looser than the full run
    assert 0.8 < result["contributor_speedup_without"] < 1.25
    assert result["free_rider_completed"] == 1.0
    assert result["origin_share_with"] < result["origin_share_without"]
    assert result["timeline_with"]


def test_cli_json(capsys):
    assert behaviour.main(["--json", "--users", "40", "--releases", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "retention_1d_with",
        "retention_1d_without",
        "retention_7d_with",
        "retention_7d_without",
        "contributor_speedup",
        "free_rider_completed",
    ):
        assert key in out
    assert behaviour.main(["--users", "20", "--releases", "3"]) == 0
    assert "retention_1d_with" in capsys.readouterr().out


def test_stats_command(tmp_path, monkeypatch):
    runner = CliRunner()
    empty = runner.invoke(app, ["stats", "--state-dir", str(tmp_path / "none")])
    assert empty.exit_code == 0 and "newcomer" in empty.output and "no identity" in empty.output
    ident = load_or_create(tmp_path)
    rec = Recognition(tmp_path / "recognition.json")
    rec.seeded("releases/a.iso", 3 * 86400)
    rec.served("releases/a.iso", 3 << 30)
    rec.save()
    led = Ledger(tmp_path / "ledger.json")
    led.record_upload("p", "releases/a.iso", 3 << 30, 1.8e9)
    led.save()
    text = runner.invoke(app, ["stats", "--state-dir", str(tmp_path)])
    assert text.exit_code == 0 and "seeder" in text.output and ident.peer_id in text.output
    assert "releases/a.iso" in text.output and "3.0 GiB" in text.output
    js = runner.invoke(app, ["stats", "--state-dir", str(tmp_path), "--json"])
    data = json.loads(js.output)
    assert data["recognition"]["level"] == "seeder" and data["ledger"]["peers"] == 1
    (tmp_path / "identity").chmod(0o644)
    bad = runner.invoke(app, ["stats", "--state-dir", str(tmp_path)])
    assert bad.exit_code == 4
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_state_dir() == tmp_path / "xdg" / "webseed"
    assert runner.invoke(app, ["stats"]).exit_code == 0


def test_signed_credit_and_ablations():
    from peer.incentives.behaviour import _signed_credit, _User, simulate

    p = Params()
    taker = _User(0.1, 0.5)
    taker.add_credit(-500.0, 0.0, p.half_life)  # took 500 MB, never uploaded
    assert _signed_credit(taker, 0.0, p) == -1.0
    assert _signed_credit(taker, 0.0, Params(whitewash=True)) == 0.0
    giver = _User(0.1, 0.5)
    giver.add_given(10.0, 0.0, p.half_life)
    giver.add_credit(-500.0, 0.0, p.half_life)
    assert _signed_credit(giver, 0.0, p) == 0.0  # in net debt but not a pure taker
    assert _signed_credit(giver, 0.0, Params(credit="gross")) == pytest.approx(10.0)
    small = Params(users=40, releases=3, tail=86400.0, credit="gross")
    out = simulate(small, incentives=True, seed=2)
    assert out.free_rider_completed == 1.0 and out.contributor_times + out.free_rider_times
    assert simulate(small, incentives=True, seed=2).speedup == out.speedup  # reproducible
