"""Databases for integration tests: an empty one of each kind (see ``tests.databases``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.databases import DATABASES, empty_database


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, one per test."""
    return await empty_database(request.param, tmp_path)
