"""Fuzz targets for every parser and decoder webseed reads untrusted bytes with.

:mod:`fuzz.targets` holds one byte-level target per parser; the hypothesis
property tests in ``tests/fuzz`` and the atheris drivers ``fuzz/fuzz_*.py``
(``make fuzz``) both call them.
"""
