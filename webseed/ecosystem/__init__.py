"""Package-repository views of a published tree, for clients that know nothing of webseed.

``pypi`` writes a PEP 503 simple index (with PEP 691 JSON beside it) so pip can
install from any mirror or peer; ``debian`` writes ``dists/`` metadata (Packages,
Release) so apt can fetch .debs from the ``pool/`` tree. Both are static files
inside the repository, so every plain mirror serves them too. Directories they
write carry a ``.webseed-generated`` marker and are never published as artifacts.
"""

from webseed.index.publisher import GENERATED as GENERATED_MARKER

__all__ = ["GENERATED_MARKER"]
