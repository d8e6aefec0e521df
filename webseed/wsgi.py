"""The peer as WSGI middleware: ``WebseedMiddleware(app, repo_dir, ...)``.

See :mod:`webseed.server.wsgi`.
"""

from webseed.server.wsgi import WebseedMiddleware

__all__ = ["WebseedMiddleware"]
