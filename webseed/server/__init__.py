"""The peer's HTTP range server: range policy, capacity, repository view, ASGI/WSGI forms.

Public entry modules: :mod:`webseed.asgi` (``create_app``), :mod:`webseed.wsgi`
(``WebseedMiddleware``), and ``webseed serve`` (:mod:`webseed.server.standalone`).
"""
