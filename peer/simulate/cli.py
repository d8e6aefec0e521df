"""``python -m peer.simulate``: run a named scenario and print its report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from . import native
from .loop import SimulationError
from .report import Report, build_report, plot
from .scenarios import GIB, MIB, SCENARIOS, Params, chunk_size_for, get

_UNITS = {"": 1, "k": 1 << 10, "m": MIB, "g": GIB, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``"1GiB"``, ``"512M"``, ``"4096"`` → bytes (binary units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] != "" and not t[-1:].isdigit() else ""
    number = t[: len(t) - len(unit)] if unit else t
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise SimulationError(f"bad size {text!r}") from None
    if value <= 0:
        raise SimulationError(f"bad size {text!r}")
    return int(value)


def run(
    name: str, peers: int, size: int, seed: int, chunk_size: int | None = None, **config: object
) -> Report:
    """Build and run scenario ``name``; ``config`` overrides :class:`SimConfig` fields."""
    scenario = get(name)
    params = Params(
        peers=peers,
        size=size,
        chunk_size=chunk_size or chunk_size_for(peers, size),
        seed=seed,
    )
    if config:
        params = replace(params, config=replace(params.config, **config))  # type: ignore[arg-type]
    started = time.perf_counter()
    cpu = time.process_time()
    sw = scenario.build(params)
    sw.run()
    report = build_report(sw, name, seed, time.perf_counter() - started)
    # The machine may be shared: CPU seconds of this process are the fairer cost measure.
    report.cpu_s = time.process_time() - cpu
    return report


def _seeding_incentives(seed: int) -> dict[str, object]:
    """The long-term user-behaviour model, with and without incentives, side by side."""
    from peer.incentives.behaviour import Params as IncentiveParams
    from peer.incentives.behaviour import run_scenario

    return dict(run_scenario(IncentiveParams(), seed=seed))


#: Scenarios that are models of their own (many releases, days of virtual time) and
#: print their own report rather than a single swarm's.
REPORT_SCENARIOS = {"seeding-incentives": _seeding_incentives}


def _go_native(argv: list[str]) -> str | None:
    """Re-start this command on the compiled build (returns only on a problem)."""
    if native.is_native():
        return None
    if os.environ.get(native.ENV_FLAG):
        return "the compiled build did not load (is its directory first on PYTHONPATH?)"
    try:
        path = native.build()
    except native.NativeBuildError as exc:
        return str(exc)
    print(f"native build: {path}", file=sys.stderr, flush=True)
    # -P: the current directory (perhaps a source checkout) must not shadow the build.
    cmd = [sys.executable, "-P", "-m", "peer.simulate", *argv]
    os.execve(sys.executable, cmd, native.native_env(path))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m peer.simulate", description=__doc__)
    names = [*SCENARIOS, *REPORT_SCENARIOS]
    ap.add_argument("--scenario", default="flash-crowd", help="one of: " + ", ".join(names))
    ap.add_argument("--peers", type=int, default=100, help="downloaders (default 100)")
    ap.add_argument("--size", default="1GiB", help="artifact size (default 1GiB)")
    ap.add_argument("--chunk-size", default=None, help="chunk size (default: by swarm size)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--plot", metavar="DIR", help="write PNG plots under DIR")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument(
        "--native",
        action="store_true",
        help="run the same scheduler and simulator compiled with mypyc (built once, cached)",
    )
    args = ap.parse_args(argv)
    if args.native:
        problem = _go_native(sys.argv[1:] if argv is None else argv)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:<16} {s.description}")
        print(f"{'seeding-incentives':<16} retention and speed with vs without incentives")
        return 0
    if args.scenario in REPORT_SCENARIOS:
        result = REPORT_SCENARIOS[args.scenario](args.seed)
        if args.json:
            print(json.dumps(result, indent=1, sort_keys=True, default=str))
        else:
            for key in sorted(result):
                if not isinstance(result[key], list | dict):
                    print(f"{key:<28} {result[key]}")
        return 0
    try:
        size = parse_size(args.size)
        chunk = parse_size(args.chunk_size) if args.chunk_size else None
        report = run(args.scenario, args.peers, size, args.seed, chunk)
        report.native = native.is_native()
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(series=False), indent=1, sort_keys=True))
    else:
        print(report.table())
    if args.plot:
        for path in plot(report, Path(args.plot)):
            print(f"plot: {path}", file=sys.stderr)
    return 0
