"""Publish a build's output with webseed's Python API (a release script or a build hook).

    WEBSEED_KEY="$(cat webseed.key)" python examples/publish_from_build.py dist/ public/ \
        [--mirror https://cdn.example.org/repo]...

Reads the signing key from the WEBSEED_KEY environment variable (never from a
file on disk in clear), publishes DIST_DIR into REPO_DIR incrementally (only
changed files are hashed), writes the pip and apt views, and prints a JSON
summary. Exits non-zero with a one-line message on any failure, so a CI step
fails loudly. Upload REPO_DIR afterwards with any static sync (rsync, aws s3
sync, a Pages artifact): the tree is a complete mirror.

From a build backend's hook, the same call is simply:

    import webseed
    webseed.publish("dist", "public", key="env:WEBSEED_KEY")
"""

from __future__ import annotations

import argparse
import json
import sys

import webseed
from webseed.errors import WebseedError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dist_dir", help="build output to publish (wheels, tarballs, .debs, ...)")
    parser.add_argument("repo_dir", help="the repository tree to update (a static site)")
    parser.add_argument("--key", default="env:WEBSEED_KEY", help="FILE, env:VAR or fd:N")
    parser.add_argument("--mirror", action="append", default=[], help="mirror/CDN base URL")
    args = parser.parse_args(argv)
    try:
        result = webseed.publish(
            args.dist_dir,
            args.repo_dir,
            key=args.key,
            # None keeps the mirror list already signed into the index.
            mirrors=[{"url": u} for u in args.mirror] or None,
        )
    except WebseedError as exc:
        print(f"publish failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.__dict__, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
