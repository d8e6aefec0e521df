"""Hypothesis settings for the property tests: bounded for `make test`, longer for `make fuzz`.

``FUZZ_SCALE`` multiplies every test's example budget (``make fuzz``/``make
soak`` raise it); the default keeps the whole directory well under a minute.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def budget(n: int) -> settings:
    """Settings for a property test that may try ``n * FUZZ_SCALE`` examples."""
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    # Refused identity headers and receipts are logged as warnings: thousands of them here.
    loggers = [logging.getLogger(n) for n in ("peer", "webseed")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)
