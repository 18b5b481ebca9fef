"""Shared test fixtures: where the official-code fixtures live, and skipping when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_FIXTURES = Path(
    os.environ.get("RELUMIX_FIXTURES", REPO.parent / "shared" / "fixtures" / "relumix_official")
)


@pytest.fixture
def official_fixtures() -> Path:
    """The folder of official-code fixtures; the test skips, with the reason, when it is absent."""
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.skip(f"official fixtures not found at {OFFICIAL_FIXTURES} (set RELUMIX_FIXTURES or place ../shared)")
    return OFFICIAL_FIXTURES
