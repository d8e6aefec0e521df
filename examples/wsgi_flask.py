"""A Flask app that also is a webseed peer, through the WSGI middleware.

    python examples/wsgi_flask.py REPO_DIR [PORT]    # wsgiref, prints the URL

Requests under /webseed/ are answered by the peer (same answers as the ASGI
app: ranges, multipart, ETag, /.well-known/webseed/...); the rest is Flask's.
"""

from __future__ import annotations

import contextlib
import sys

from flask import Flask

from webseed.wsgi import WebseedMiddleware


def build(repo_dir: str) -> Flask:
    """The Flask app with the peer under /webseed."""
    app = Flask(__name__)

    @app.get("/")
    def home() -> dict[str, str]:
        return {"app": "example", "mirror": "/webseed/"}

    app.wsgi_app = WebseedMiddleware(app.wsgi_app, repo_dir, prefix="/webseed", slots=8)  # type: ignore[method-assign]
    return app


if __name__ == "__main__":
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    repo = sys.argv[1] if len(sys.argv) > 1 else "."
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with make_server("127.0.0.1", port, build(repo), server_class=ThreadingWSGIServer) as httpd:
        print(f"http://127.0.0.1:{httpd.server_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            httpd.serve_forever()
