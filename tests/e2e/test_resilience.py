"""The running app when the model provider fails or the budget is spent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import FakeUsage, RunningFake, Scenario
from tests.e2e.conftest import sqlite_url
from tests.sse_client import ask

pytestmark = pytest.mark.e2e


def resilient_environment(
    fake_upstream: RunningFake, folder: Path, **overrides: str
) -> dict[str, str]:
    """Defaults for fallback and retries, relaying ``fake_upstream``."""
    return {
        "OPENAI_API_KEY": "sk-test-resilience",
        "OPENAI_BASE_URL": fake_upstream.base_url,
        "UPSTREAM_MAX_RETRIES": "1",
        "SEMANTIC_SEARCH": "false",
        "DATABASE_URL": sqlite_url(folder),
        **overrides,
    }


@pytest.fixture(scope="module")
def guarded_app(
    fake_upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """No daily budget: each test queues the upstream failures it needs, in any order."""
    folder = tmp_path_factory.mktemp("resilience")
    with run_app(resilient_environment(fake_upstream, folder)) as app:
        yield app


@pytest.fixture
def budgeted_app(
    fake_upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """A tiny daily budget, unspent: a test that spends it leaves no trace for the next."""
    folder = tmp_path_factory.mktemp("budget")
    with run_app(resilient_environment(fake_upstream, folder, DAILY_TOKEN_BUDGET="1000")) as app:
        yield app


def test_one_upstream_hiccup_is_retried_invisibly(
    guarded_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(
        Scenario(status_code=500), Scenario(deltas=["Recovered."], usage=FakeUsage(input_tokens=1))
    )
    answer = ask(guarded_app, {"input": "What does Minji do?"})
    assert answer.names == ["meta", "sources", "message", "done"]
    assert answer.text == "Recovered."
    assert len(upstream.api.requests) == 2


def test_unreachable_model_falls_back_to_the_documents(
    guarded_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(status_code=503), Scenario(status_code=503))
    answer = ask(guarded_app, {"input": "When can she start?"})
    assert answer.names[:3] == ["meta", "sources", "notice"]
    assert answer.data_of("meta")["mode"] == "openai"
    notice = answer.data_of("notice")
    assert (notice["code"], notice["mode"], notice["model"]) == (
        "answered_offline",
        "offline",
        "offline",
    )
    assert answer.terminal == "done"
    assert "January 4, 2027" in answer.text


def test_spent_budget_answers_offline_until_the_day_rolls_over(
    budgeted_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["Costly answer."], usage=FakeUsage(input_tokens=2000)))
    first = ask(budgeted_app, {"input": "What is her biggest achievement?"})
    assert first.data_of("meta")["mode"] == "openai"
    second = ask(budgeted_app, {"input": "What is her biggest achievement?"})
    meta = second.data_of("meta")
    assert meta["mode"] == "offline"
    assert meta["notice"]["code"] == "daily_token_budget_spent"
    assert "820 ms" in second.text
    assert len(upstream.api.requests) == 1


def test_json_answer_carries_the_notice(guarded_app: RunningApp, upstream: RunningFake) -> None:
    upstream.api.enqueue(Scenario(status_code=503), Scenario(status_code=503))
    response = httpx2.post(
        f"{guarded_app.base_url}/openai-response", json={"input": "When can she start?"}
    )
    body = response.json()
    assert body["mode"] == "offline"
    assert body["notice"]["code"] == "answered_offline"


def test_logs_stay_free_of_secrets(guarded_app: RunningApp) -> None:
    log = guarded_app.log()
    assert "sk-test-resilience" not in log
    assert "Traceback" not in log
