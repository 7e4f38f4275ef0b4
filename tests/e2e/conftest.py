from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import RunningFake, run_fake_responses_api

UPSTREAM_KEY = "sk-test-e2e-secret-key-0123456789"
ADMIN_TOKEN = "admin-token-for-e2e-tests-0123456789"


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'conversations.db'}"


@pytest.fixture(scope="session")
def offline_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app as a newcomer runs it: no key, the bundled sample profile.

    ENGINE is explicit so that a developer's own ``.env`` with a real key cannot turn these
    tests into calls to OpenAI.
    """
    database = sqlite_url(tmp_path_factory.mktemp("offline"))
    with run_app({"ENGINE": "offline", "DATABASE_URL": database}) as app:
        yield app


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[RunningFake]:
    with run_fake_responses_api() as fake:
        yield fake


@pytest.fixture(scope="session")
def openai_app(
    fake_upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """The app relaying a Responses API server, started as ``python main.py``."""
    environment = {
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": fake_upstream.base_url,
        "OPENAI_MODEL": "gpt-fake",
        "ALLOWED_MODELS": "gpt-fake-mini",
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        # These tests look at how failures reach the client; test_resilience covers fallback.
        "FALLBACK_TO_OFFLINE": "false",
        "UPSTREAM_IDLE_TIMEOUT_SECONDS": "2",
        "SSE_PING_SECONDS": "0.5",
        "DATABASE_URL": sqlite_url(tmp_path_factory.mktemp("openai")),
        # To find answers whose client never got a conversation id (it left).
        "ADMIN_TOKEN": ADMIN_TOKEN,
        # These tests see a client that leaves close the upstream within a second: the direct
        # path. Resumable answers (the default window, 15 s) are tested in test_resume.py.
        "RESUME_WINDOW_SECONDS": "0",
    }
    with run_app(environment, via="main.py") as app:
        yield app


@pytest.fixture
def upstream(fake_upstream: RunningFake) -> Iterator[RunningFake]:
    """The shared fake with nothing queued or counted; the test's streams end with it, so
    that none ends during the next test and shows in its counts."""
    fake_upstream.api.reset()
    yield fake_upstream
    fake_upstream.api.release_stalled_streams()
    assert fake_upstream.api.wait_for(lambda: fake_upstream.api.open_streams == 0), (
        f"{fake_upstream.api.open_streams} upstream streams outlived the test"
    )
