"""Prerequisites of the suite: a missing one fails the test, it is never skipped.

Everything a test needs (nginx, aria2c, squid, curl, minisign, dpkg-deb, root for
network namespaces and tmpfs, the registries for real release data) is installed
or provided by the project's own files (`make system-deps`, run by `make test`),
so its absence is a broken set-up to report, not a reason to pass silently.
"""

from __future__ import annotations

from typing import NoReturn

import pytest


def missing(what: str) -> NoReturn:
    """Fail the running test: ``what`` it needs is not there."""
    pytest.fail(f"prerequisite missing: {what} (make system-deps installs the tools, as root)")


def needs(absent: bool, what: str) -> pytest.MarkDecorator:
    """Mark a test that needs ``what``; when ``absent`` it fails at set-up, naming it."""
    return pytest.mark.prereq(absent=absent, what=what)
