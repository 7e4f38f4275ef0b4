"""The fault tier: the real app under uvicorn on a throwaway PostgreSQL and Redis, which the
tests kill and freeze mid-stream. Without the server programs the tests skip with the reason
printed; in CI (CI=true) they must run (.ci/run installs the programs when missing)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.fake_responses_api import RunningFake, run_fake_responses_api
from tests.faults.servers import IN_CI, ThrowawayPostgres, ThrowawayRedis, postgres_bin


def _missing(what: str) -> None:
    message = f"{what} is not installed: the fault tests need it"
    if IN_CI:
        pytest.fail(f"{message}; CI must run them (.ci/run installs it)")
    pytest.skip(message)


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    bin_dir = postgres_bin()
    if bin_dir is None:
        _missing("PostgreSQL's server (initdb, postgres)")
        raise AssertionError("unreachable")
    server = ThrowawayPostgres(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def redis() -> Iterator[ThrowawayRedis]:
    program = shutil.which("redis-server")
    if program is None:
        _missing("redis-server")
        raise AssertionError("unreachable")
    server = ThrowawayRedis(program)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def upstream() -> Iterator[RunningFake]:
    with run_fake_responses_api() as fake:
        yield fake


@pytest.fixture
def spool_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "answers.sqlite3"
