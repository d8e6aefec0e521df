"""webseed: verified swarm distribution of large software releases over plain HTTP.

The core every other package shares: manifests and the signed repository index,
integrity (hashes, signatures, keys, tamper alerts), storage of partial and
complete artifacts, and on top of it the ASGI app, the WSGI middleware, the
standalone peer and the CLI.

``webseed.publish(src, repo, key=...)`` is the build tools' entry point
(:mod:`webseed.api`); it is imported on first use so ``import webseed`` stays light.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "publish"]

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~10 ms
if TYPE_CHECKING:
    from webseed.api import publish


def __getattr__(name: str) -> object:
    if name == "publish":
        from webseed.api import publish

        return publish
    raise AttributeError(f"module 'webseed' has no attribute {name!r}")
