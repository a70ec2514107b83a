"""Shared test helpers.

`require(condition, why)` skips a test whose root-only part (Slurm, pdflatex, ...) is missing, on
a laptop; with ACTLAB_STRICT=1 (set by .ci/run) the same condition fails the test instead, so CI
can never go green by skipping.
"""
from __future__ import annotations

import os

import pytest

STRICT = os.environ.get("ACTLAB_STRICT") == "1"


def require(condition: bool, why: str) -> None:
    if condition:
        return
    if STRICT:
        pytest.fail(f"required in CI (ACTLAB_STRICT=1): {why}")
    pytest.skip(why)
