"""A Starlette app that also is a webseed peer: the repository is mounted under /mirror.

    python examples/asgi_app.py REPO_DIR [PORT]      # prints the URL it serves on
    hypercorn 'examples.asgi_app:build("REPO_DIR")'  # or under any ASGI server

Everything under /mirror/ is the peer (artifacts with ranges, /.well-known/webseed/...);
the other routes are the host application's own.
"""

from __future__ import annotations

import asyncio
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from webseed.asgi import create_app


def build(repo_dir: str) -> Starlette:
    """The host application with the peer mounted at /mirror."""
    peer_app = create_app(repo_dir, slots=16)

    async def home(request: Request) -> JSONResponse:
        stats = peer_app.state.peer.stats.snapshot()
        return JSONResponse(
            {"app": "example", "mirror": "/mirror/", "served": stats["bytes_served"]}
        )

    return Starlette(routes=[Route("/", home), Mount("/mirror", app=peer_app)])


if __name__ == "__main__":
    from webseed.server.standalone import ServerOptions, serve

    repo = sys.argv[1] if len(sys.argv) > 1 else "."
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    asyncio.run(
        serve(build(repo), ServerOptions(port=port), ready=lambda url: print(url, flush=True))
    )
