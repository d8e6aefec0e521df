"""What a run produced: completion times against the Kumar–Ross bound, origin share,
corruption and bans, and time series for the plots."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bound import kumar_ross
from .swarm import ORIGIN_ROLES, Swarm


@dataclass
class Report:
    """The outcome of one run (``to_json`` keys are the stable interface)."""

    scenario: str
    peers: int
    size: int
    chunk_size: int
    seed: int
    completed: int
    incomplete: int
    mean_completion_s: float
    median_completion_s: float
    p95_completion_s: float
    max_completion_s: float
    kumar_ross_bound_s: float
    bound_ratio: float
    max_bound_ratio: float
    origin_share: float
    bytes_from_peers: float
    bytes_from_seeds: float
    bytes_from_mirrors: float
    wasted_share: float
    corrupt_received: int
    corrupt_accepted: int
    banned: int
    honest_banned: int
    malicious_served: int
    malicious_banned: int
    corrupt_pairs_unbanned: int
    missing_at_finish: int
    sim_time_s: float
    wall_s: float
    scheduler_events: int
    loop_events: int
    #: CPU seconds of the run (set by the caller that timed it).
    cpu_s: float = 0.0
    #: Ran on the mypyc-compiled scheduler and simulator (``--native``).
    native: bool = False
    completion_times: list[float] = field(default_factory=list)
    timeseries: list[dict[str, float]] = field(default_factory=list)

    def to_json(self, *, series: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (``series=False`` drops the per-peer and per-sample lists)."""
        out = asdict(self)
        if not series:
            out.pop("completion_times")
            out.pop("timeseries")
        return out

    def table(self) -> str:
        """A human summary, one metric per line."""
        rows = [
            ("scenario", self.scenario),
            ("downloaders", f"{self.peers} ({self.completed} completed, {self.incomplete} not)"),
            (
                "artifact",
                f"{self.size / 2**20:.0f} MiB in {self.chunk_size / 2**20:.0f} MiB chunks",
            ),
            ("mean completion", f"{self.mean_completion_s:.1f} s"),
            ("median / p95", f"{self.median_completion_s:.1f} s / {self.p95_completion_s:.1f} s"),
            ("max completion", f"{self.max_completion_s:.1f} s"),
            ("Kumar-Ross bound", f"{self.kumar_ross_bound_s:.1f} s"),
            ("mean / bound", f"{self.bound_ratio:.3f}"),
            ("max / bound", f"{self.max_bound_ratio:.3f}"),
            ("origin share", f"{100 * self.origin_share:.2f} %"),
            ("wasted (dup/corrupt/cancelled)", f"{100 * self.wasted_share:.2f} %"),
            ("corrupt received / accepted", f"{self.corrupt_received} / {self.corrupt_accepted}"),
            (
                "banned (honest) / malicious served→banned",
                f"{self.banned} ({self.honest_banned}) / "
                f"{self.malicious_served}→{self.malicious_banned}",
            ),
            (
                "simulated / wall / CPU",
                f"{self.sim_time_s:.0f} s / {self.wall_s:.1f} s / {self.cpu_s:.1f} s"
                + (" (native build)" if self.native else ""),
            ),
            ("scheduler events", f"{self.scheduler_events}"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_report(sw: Swarm, scenario: str, seed: int, wall_s: float) -> Report:
    """Summarise a finished :class:`Swarm`."""
    leechers = [n for n in sw.nodes.values() if n.role == "leecher"]
    times = sorted(n.done_at - n.joined_at for n in leechers if n.done_at is not None)
    origin_up = sum(n.spec.up for n in sw.nodes.values() if n.role in ORIGIN_ROLES)
    bound = kumar_ross(
        sw.size,
        origin_up,
        [n.spec.up for n in leechers if n.spec.reachable],
        [n.spec.down for n in leechers],
    )
    total = sum(sw.bytes_by_role.values())
    origin = sw.bytes_by_role["seed"] + sw.bytes_by_role["mirror"]
    accepted = 0
    missing = 0
    for n in leechers:
        if n.sched is None:
            continue
        for c in range(sw.chunks):
            if n.sched.is_verified(c) and not n.has[c]:
                missing += 1  # the scheduler believes it verified a chunk the store lacks
        accepted += sum(1 for c in n.bad_chunks if n.sched.is_verified(c))
    banned_sources = {s for (_, s) in sw.bans}
    bad_roles = ("malicious",)
    honest_banned = {s for s in banned_sources if sw.nodes[s].role not in bad_roles}
    served = {s for (_, s) in sw.corrupt_pairs}
    unbanned = sum(1 for pair in sw.corrupt_pairs if pair not in sw.bans)
    mean = statistics.fmean(times) if times else float("inf")
    mx = times[-1] if times else float("inf")
    return Report(
        scenario=scenario,
        peers=len(leechers),
        size=sw.size,
        chunk_size=sw.chunk_size,
        seed=seed,
        completed=len(times),
        incomplete=len(leechers) - len(times),
        mean_completion_s=mean,
        median_completion_s=statistics.median(times) if times else float("inf"),
        p95_completion_s=times[min(len(times) - 1, int(0.95 * len(times)))]
        if times
        else float("inf"),
        max_completion_s=mx,
        kumar_ross_bound_s=bound,
        bound_ratio=mean / bound if bound else float("inf"),
        max_bound_ratio=mx / bound if bound else float("inf"),
        origin_share=origin / total if total else 0.0,
        bytes_from_peers=sum(sw.bytes_by_role[r] for r in ("leecher", "malicious", "staller")),
        bytes_from_seeds=sw.bytes_by_role["seed"],
        bytes_from_mirrors=sw.bytes_by_role["mirror"],
        wasted_share=sw.wasted_bytes / total if total else 0.0,
        corrupt_received=sw.corrupt_received,
        corrupt_accepted=accepted,
        banned=len(banned_sources),
        honest_banned=len(honest_banned),
        malicious_served=len(served),
        malicious_banned=len(served & banned_sources),
        corrupt_pairs_unbanned=unbanned,
        missing_at_finish=missing,
        sim_time_s=sw.loop.now,
        wall_s=wall_s,
        scheduler_events=sw.scheduler_events,
        loop_events=sw.loop.fired,
        completion_times=times,
        timeseries=sw.samples,
    )


def write_json(report: Report, path: Path) -> None:
    """Write ``report`` as JSON (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n")


def plot(report: Report, directory: Path) -> list[Path]:
    """Completion-time CDF and origin share over time as PNGs under ``directory``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    fig, ax = plt.subplots(figsize=(6, 4))
    times = report.completion_times
    if times:
        ax.step(
            times, [(i + 1) / len(times) for i in range(len(times))], where="post", label="peers"
        )
    ax.axvline(report.kumar_ross_bound_s, color="red", linestyle="--", label="Kumar-Ross bound")
    ax.set_xlabel("completion time (s)")
    ax.set_ylabel("fraction of downloaders")
    ax.set_title(f"{report.scenario}: {report.peers} peers")
    ax.legend()
    path = directory / f"sim-{report.scenario}-cdf.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    out.append(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    ts = report.timeseries
    ax.plot([s["t"] for s in ts], [100 * s["origin_share"] for s in ts], label="origin share (%)")
    ax2 = ax.twinx()
    ax2.plot([s["t"] for s in ts], [s["min_copies"] for s in ts], color="green", label="min copies")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("origin share of bytes so far (%)")
    ax2.set_ylabel("copies of the rarest chunk")
    ax.set_title(f"{report.scenario}: origin share and availability")
    path = directory / f"sim-{report.scenario}-origin.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    out.append(path)
    return out
