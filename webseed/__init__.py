"""webseed: verified swarm distribution of large software releases over plain HTTP.

The core every other package shares: manifests and the signed repository index,
integrity (hashes, signatures, keys, tamper alerts), storage of partial and
complete artifacts, and on top of it the ASGI app, the WSGI middleware, the
standalone peer and the CLI.
"""

__version__ = "0.1.0"
