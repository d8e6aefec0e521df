"""The peer as an ASGI application: ``create_app(repo_dir, ...)``.

See :mod:`webseed.server.app`.
"""

from webseed.server.app import PlanResponse, create_app
from webseed.server.capacity import FifoPolicy, Requester, UploadPolicy

__all__ = ["FifoPolicy", "PlanResponse", "Requester", "UploadPolicy", "create_app"]
