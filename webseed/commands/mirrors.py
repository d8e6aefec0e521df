"""``webseed mirrors rank``: show how the mirrors of a list or Metalink file would be ranked."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from webseed.commands._common import EXIT_SOURCES, EXIT_USAGE


def _rank(
    list_file: Path | None,
    metalink: Path | None,
    path: str,
    geoip_db: Path | None,
    client_ip: str | None,
    probe: bool,
    as_json: bool,
) -> int:
    import httpx

    from geo.discovery import parse_metalink, parse_mirror_list
    from geo.fetch import MirrorFetcher
    from geo.policy import MirrorPolicy
    from geo.proximity import open_locator
    from webseed.errors import WebseedError

    try:
        if (list_file is None) == (metalink is None):
            raise typer.BadParameter("give exactly one of --list or --metalink")
        if list_file is not None:
            mirrors = parse_mirror_list(list_file.read_bytes())
        else:
            assert metalink is not None
            files = parse_metalink(metalink.read_bytes())
            mirrors = list(files[0].mirrors)
            path = path or files[0].name
        locator = open_locator(geoip_db)
    except (OSError, WebseedError, typer.BadParameter) as exc:
        typer.echo(f"error: {exc}", err=True)
        return EXIT_USAGE
    policy = MirrorPolicy(mirrors)
    probes: dict[str, str] = {}

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            fetcher = MirrorFetcher(client, policy)
            await fetcher.locate(locator, client_ip)
            if probe and path:
                for r in await fetcher.probe_all(path, 0, 16 * 1024, budget=5.0):
                    probes[r.url] = (
                        f"ok {r.rtt * 1000:.1f} ms"
                        if r.ok and r.rtt is not None
                        else f"{r.failure.value if r.failure else 'failed'}: {r.detail}"
                    )

    asyncio.run(run())
    if locator is not None:
        locator.close()
    rows = policy.report(time.monotonic())
    for row in rows:
        row["probe"] = probes.get(str(row["url"]))
    if as_json:
        typer.echo(
            json.dumps(
                {"geoip_db": str(locator.path) if locator else None, "mirrors": rows}, indent=2
            )
        )
    else:
        where = locator.path if locator else "none (measured performance only)"
        typer.echo(f"GeoIP database: {where}")
        for row in rows:
            est = row["estimate_s"]
            shown = "-" if not isinstance(est, float) else f"{est * 1000:9.1f} ms"
            typer.echo(
                f"{row['rank']:>3}  {row['state']:<8} {shown:>12}  "
                f"{row['country'] or '--'}  {row['url']}  [{row['reason']}]"
                + (f"  probe: {row['probe']}" if row["probe"] else "")
            )
    usable = any(row["usable"] for row in rows)
    return 0 if usable else EXIT_SOURCES


def register(app: typer.Typer) -> None:
    """Add the ``mirrors`` command group."""
    group = typer.Typer(no_args_is_help=True, help="HTTP mirrors: ranking, probing, health.")

    @group.command("rank")
    def rank(
        list_file: Annotated[
            Path | None, typer.Option("--list", help="Mirror list (JSON or text).")
        ] = None,
        metalink: Annotated[Path | None, typer.Option("--metalink", help="Metalink 4 file")] = None,
        path: Annotated[str, typer.Option("--path", help="Repository path to probe.")] = "",
        geoip_db: Annotated[
            Path | None,
            typer.Option("--geoip-db", help="MaxMind .mmdb (default: $WEBSEED_GEOIP_DB, shipped)."),
        ] = None,
        client_ip: Annotated[
            str | None, typer.Option("--client-ip", help="Place the client at this address.")
        ] = None,
        probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Probe mirrors")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Rank mirrors by proximity, probe results and health."""
        code = _rank(list_file, metalink, path, geoip_db, client_ip, probe, as_json)
        if code:
            raise typer.Exit(code)

    app.add_typer(group, name="mirrors")
