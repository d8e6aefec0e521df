"""Directory URLs of the package views: ``simple/<project>/`` answers its index page.

``webseed publish`` writes the pip view as ``simple/**/index.html`` plus
``index.json`` (PEP 503 / PEP 691) and the apt view as plain files under
``dists/``. A static server answers a directory URL with its ``index.html``;
the peer does the same for any directory URL that has one, and under
``simple/`` it negotiates PEP 691: a client preferring
``application/vnd.pypi.simple.v1+json`` (pip does) gets ``index.json``.
"""

from __future__ import annotations

#: PEP 691 media types.
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
_HTML_TYPES = (SIMPLE_HTML, "text/html")
#: Longest Accept header looked at (pip's is about 100 bytes).
MAX_ACCEPT = 1024


def _quality(accept: str, media_type: str) -> float:
    """The q-value ``accept`` gives ``media_type`` (exact, ``type/*`` or ``*/*``); 0 if none."""
    best, specificity = 0.0, -1
    major = media_type.split("/", 1)[0]
    for item in accept[:MAX_ACCEPT].split(","):
        fields = [f.strip() for f in item.split(";")]
        rng = fields[0].lower()
        if rng == media_type:
            rank = 2
        elif rng == f"{major}/*":
            rank = 1
        elif rng == "*/*":
            rank = 0
        else:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        if rank > specificity:
            best, specificity = q, rank
    return best


def wants_simple_json(accept: str) -> bool:
    """Does this Accept header prefer the PEP 691 JSON form over HTML?"""
    if not accept:
        return False
    json_q = _quality(accept, SIMPLE_JSON)
    return json_q > 0 and json_q > max(_quality(accept, t) for t in _HTML_TYPES)


def directory_index(rel: str, accept: str) -> tuple[str, str | None] | None:
    """For a directory URL (``rel`` ending in ``/``): (index file, content type to force).

    ``None`` for any other path. The content type is set for ``index.json``
    only; ``index.html`` keeps the server's usual guess (``text/html``).
    """
    if not rel.endswith("/"):
        return None
    if (rel == "simple/" or rel.startswith("simple/")) and wants_simple_json(accept):
        return rel + "index.json", SIMPLE_JSON
    return rel + "index.html", None
