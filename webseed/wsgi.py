"""The peer as WSGI middleware: ``WebseedMiddleware(app, repo_dir, ...)`` (see :mod:`webseed.server.wsgi`)."""

from webseed.server.wsgi import WebseedMiddleware

__all__ = ["WebseedMiddleware"]
