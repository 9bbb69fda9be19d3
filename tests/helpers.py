"""Shared test helpers (no pytest fixtures here: plain functions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """Path under ../shared/fixtures; skip (or fail in CI, WAV2SEM_REQUIRE_SHARED=1) when absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        reason = f"shared fixture {path} is absent (a fresh clone has no ../shared); CI always has it"
        if os.environ.get("WAV2SEM_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
