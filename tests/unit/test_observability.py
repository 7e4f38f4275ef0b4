"""Logs, request ids and metrics, in process with the scripted engine behind the real app."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.observability import Metrics, configure_logging
from api.sse import answer_events
from application.ask import AnswerStream
from bootstrap import create_app
from domain.errors import ErrorCode
from domain.models import AnswerDone, AnswerEvent, AnswerFailed, AnswerMeta, TextDelta, Usage
from settings import Settings
from tests.fakes import (
    InMemoryAnswerSpool,
    InMemoryConversations,
    ScriptedEngine,
    StoreThatGoesDown,
    failing_script,
    small_profile,
)

SSE = "/openai-response/sse"
JSON = "/openai-response"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def build_app(engine: ScriptedEngine | None = None, **overrides: Any) -> FastAPI:
    return create_app(
        settings(**overrides),
        knowledge=small_profile(),
        engine=engine or ScriptedEngine(),
        conversations=InMemoryConversations(),
    )


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def client(engine: ScriptedEngine) -> Iterator[TestClient]:
    with TestClient(build_app(engine), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _restore_default_logging() -> Iterator[None]:
    yield
    configure_logging("info", "json")


def ask_sse(client: TestClient, headers: dict[str, str] | None = None) -> str:
    with client.stream("POST", SSE, json={"input": "Where did Jane work?"}, headers=headers) as r:
        assert r.status_code == 200
        r.read()
        return r.headers["x-request-id"]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- request id ----------------------------------------------------------------------------


def test_request_id_is_generated_and_returned(client: TestClient) -> None:
    first = client.get("/health").headers["x-request-id"]
    second = client.get("/health").headers["x-request-id"]
    assert GENERATED_ID.fullmatch(first)
    assert first != second


def test_a_sane_incoming_request_id_is_kept(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "cf-Ray_1234.abcd"})
    assert response.headers["x-request-id"] == "cf-Ray_1234.abcd"


@pytest.mark.parametrize(
    "incoming",
    ["short", "has spaces in it", "x" * 65, "<script>alert(1)</script>", "id;with;semicolons"],
)
def test_an_insane_incoming_request_id_is_replaced(client: TestClient, incoming: str) -> None:
    response = client.get("/health", headers={"X-Request-ID": incoming})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


def test_streamed_and_error_responses_carry_the_request_id(client: TestClient) -> None:
    assert ask_sse(client, {"X-Request-ID": "stream-request-1"}) == "stream-request-1"
    invalid = client.post(JSON, json={"input": ""}, headers={"X-Request-ID": "invalid-request-1"})
    assert invalid.status_code == 422
    assert invalid.headers["x-request-id"] == "invalid-request-1"
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert GENERATED_ID.fullmatch(missing.headers["x-request-id"])


# --- logs ----------------------------------------------------------------------------------


def test_log_lines_are_json_and_carry_the_request_id(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    ask_sse(client, {"X-Request-ID": "json-log-check-1"})
    lines = json_lines(capsys.readouterr().err)
    access = [line for line in lines if line["logger"] == "api.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "json-log-check-1"
    assert access[0]["level"] == "INFO"
    assert access[0]["status"] == 200
    assert access[0]["route"] == SSE
    assert access[0]["method"] == "POST"
    assert access[0]["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", access[0]["time"])


def test_access_log_leaves_out_query_strings_and_conversation_ids(
    client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    client.get("/no-such-page?token=query-secret-value")
    client.get("/conversations/conversation-id-secret")
    output = capsys.readouterr().err
    assert "query-secret-value" not in output
    assert "conversation-id-secret" not in output
    paths = [line["path"] for line in json_lines(output) if line["logger"] == "api.access"]
    assert paths == ["/no-such-page", "/conversations/{conversation_id}"]


def test_a_broken_engine_leaves_no_secret_or_traceback_in_the_logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    engine = ScriptedEngine(raise_after=1)  # raises RuntimeError("... sk-do-not-leak")
    with TestClient(build_app(engine), raise_server_exceptions=False) as client:
        capsys.readouterr()
        ask_sse(client, {"X-Request-ID": "broken-engine-1"})
        output = capsys.readouterr().err
    assert "sk-do-not-leak" not in output
    assert "Traceback" not in output
    failures = [line for line in json_lines(output) if line["level"] == "ERROR"]
    assert failures
    assert all(line["request_id"] == "broken-engine-1" for line in failures)
    assert "sk-do-not-leak" not in caplog.text


def test_an_unhandled_exception_gives_a_500_with_a_request_id_and_no_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = build_app()

    async def boom() -> None:
        raise RuntimeError("database password sk-secret-123")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        capsys.readouterr()
        response = client.get("/boom", headers={"X-Request-ID": "boom-request-1"})
        output = capsys.readouterr().err
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-request-1"
    assert "sk-secret" not in response.text
    assert "sk-secret" not in output
    assert "Traceback" not in output
    assert any(line["request_id"] == "boom-request-1" for line in json_lines(output))


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_stray_logger_exception_prints_only_the_exception_type(
    fmt: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", fmt)
    capsys.readouterr()
    try:
        raise ValueError("upstream said: key sk-secret-456 is invalid")
    except ValueError:
        logging.getLogger("somewhere.deep").exception("could not call upstream")
    logging.getLogger("somewhere.deep").error("with a stack", stack_info=True)
    output = capsys.readouterr().err
    assert "sk-secret" not in output
    assert "Traceback" not in output
    assert "Stack (most recent call last)" not in output
    assert "ValueError" in output
    if fmt == "json":
        first = json_lines(output)[0]
        assert first["error_type"] == "ValueError"
        assert first["message"] == "could not call upstream"
        assert "exc_info" not in first


FORMATTED_TRACEBACK = """Traceback (most recent call last):
  File "/app/bootstrap.py", line 1, in bootstrap
    await migrate(engine)
asyncpg.exceptions.InvalidPasswordError: password for ask is pw-secret-9

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/infrastructure/database.py", line 2, in migrate
sqlalchemy.exc.DBAPIError: (InvalidPasswordError) password for ask is pw-secret-9
[SQL: SELECT 1]
(Background on this error at: https://sqlalche.me/e/21/dbapi)
"""


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_traceback_in_a_message_is_left_out_and_named(
    fmt: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Starlette hands uvicorn a failed start-up's traceback as text, which uvicorn logs.
    configure_logging("info", fmt)
    capsys.readouterr()
    logging.getLogger("uvicorn.error").error(FORMATTED_TRACEBACK)
    output = capsys.readouterr().err
    assert "Traceback" not in output
    assert "pw-secret" not in output
    assert "SELECT" not in output
    assert "DBAPIError" in output
    if fmt == "json":
        [line] = json_lines(output)
        assert line["error_type"] == "DBAPIError"


def test_text_format_names_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    with TestClient(build_app(log_format="text"), raise_server_exceptions=False) as client:
        capsys.readouterr()
        client.get("/no-such-page", headers={"X-Request-ID": "text-format-1"})
        output = capsys.readouterr().err
    assert "INFO api.access [text-format-1] GET /no-such-page 404" in output


def test_uvicorn_loggers_share_the_handler_and_its_access_log_is_off() -> None:
    build_app()
    for name in ("uvicorn", "uvicorn.error"):
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate
    access = logging.getLogger("uvicorn.access")
    assert not access.hasHandlers()
    assert logging.getLogger("openai").level == logging.WARNING


# --- metrics -------------------------------------------------------------------------------


def test_metrics_after_one_streamed_answer(client: TestClient) -> None:
    ask_sse(client)
    samples = scrape(client)
    requests = "http_requests_total"
    assert value(samples, requests, method="POST", route=SSE, status="200") == 1
    assert value(samples, "http_request_duration_seconds_count", method="POST", route=SSE) == 1
    assert value(samples, "answer_time_to_first_delta_seconds_count", mode="scripted") == 1
    stream_count = "answer_stream_duration_seconds_count"
    assert value(samples, stream_count, mode="scripted", outcome="completed") == 1
    assert value(samples, "answer_tokens_total", kind="input") == 3
    assert value(samples, "answer_tokens_total", kind="output") == 2
    assert value(samples, "open_streams") == 0
    assert value(samples, "upstream_errors_total", code="upstream_rate_limited") == 0


def test_the_json_endpoint_counts_tokens(client: TestClient) -> None:
    assert client.post(JSON, json={"input": "Where did Jane work?"}).status_code == 200
    samples = scrape(client)
    assert value(samples, "answer_tokens_total", kind="input") == 3
    assert value(samples, "answer_tokens_total", kind="output") == 2
    assert value(samples, "answer_time_to_first_delta_seconds_count", mode="scripted") is None


@pytest.mark.parametrize("path", [SSE, JSON])
def test_a_failed_answer_counts_an_upstream_error(path: str) -> None:
    engine = ScriptedEngine(script=failing_script(ErrorCode.UPSTREAM_RATE_LIMITED))
    with TestClient(build_app(engine), raise_server_exceptions=False) as client:
        client.post(path, json={"input": "Where did Jane work?"})
        samples = scrape(client)
    assert value(samples, "upstream_errors_total", code="upstream_rate_limited") == 1
    assert value(samples, "upstream_errors_total", code="upstream_timeout") == 0
    assert value(samples, "answer_tokens_total", kind="input") == 0
    if path == SSE:
        count = "answer_stream_duration_seconds_count"
        assert value(samples, count, mode="scripted", outcome="failed") == 1


GAVE_UP = [AnswerFailed(ErrorCode.UPSTREAM_FAILED, "loop", Usage(4_000, 100, 4_100))]


@pytest.mark.parametrize("path", [SSE, JSON])
def test_the_tokens_of_a_failed_answer_are_counted(path: str) -> None:
    engine = ScriptedEngine(script=GAVE_UP)
    with TestClient(build_app(engine, fallback_to_offline=False)) as client:
        client.post(path, json={"input": "Where did Jane work?"})
        samples = scrape(client)
    assert value(samples, "answer_tokens_total", kind="input") == 4_000
    assert value(samples, "answer_tokens_total", kind="output") == 100


@pytest.mark.parametrize("path", [SSE, JSON])
def test_a_fallback_counts_the_first_engines_tokens_and_is_observed_as_offline(
    path: str,
) -> None:
    engine = ScriptedEngine(script=GAVE_UP)
    with TestClient(build_app(engine, fallback_to_offline=True)) as client:
        assert client.post(path, json={"input": "Where did Jane work?"}).status_code == 200
        samples = scrape(client)
    assert value(samples, "answer_tokens_total", kind="input") == 4_000
    fallbacks = "answer_fallbacks_total"
    assert value(samples, fallbacks, failed_mode="scripted", code="upstream_failed") == 1
    if path == SSE:
        count = "answer_stream_duration_seconds_count"
        assert value(samples, count, mode="offline", outcome="completed") == 1
        assert value(samples, count, mode="scripted", outcome="completed") is None


@pytest.mark.parametrize("path", [SSE, JSON])
def test_a_fallback_answer_keeps_the_evidence_of_the_upstream_failure(path: str) -> None:
    engine = ScriptedEngine(script=[AnswerFailed(ErrorCode.UPSTREAM_AUTH, "bad key")])
    conversations = InMemoryConversations()
    app = create_app(
        settings(), knowledge=small_profile(), engine=engine, conversations=conversations
    )
    with TestClient(app) as client:
        assert client.get("/ready").json()["upstream_key"] == "unchecked"
        response = client.post(path, json={"input": "Where did Jane work?"})
        assert response.status_code == 200
        samples = scrape(client)
        ready = client.get("/ready")

    # The offline engine answered, and the failure it replaced is counted all the same.
    assert value(samples, "upstream_errors_total", code="upstream_auth") == 1
    fallbacks = "answer_fallbacks_total"
    assert value(samples, fallbacks, failed_mode="scripted", code="upstream_auth") == 1
    assert value(samples, fallbacks, failed_mode="scripted", code="upstream_timeout") == 0
    # One metric: the two that counted fallbacks before (by mode, by code) are gone.
    assert not any(name.startswith("fallback_answers") for name, _ in samples)
    if path == SSE:
        count = "answer_stream_duration_seconds_count"
        assert value(samples, count, mode="offline", outcome="completed") == 1
        assert value(samples, count, mode="scripted", outcome="completed") is None
        first_delta = "answer_time_to_first_delta_seconds_count"
        assert value(samples, first_delta, mode="offline") == 1
    [(_, stored)] = conversations.finished
    assert (stored.status, stored.model) == ("completed", "offline")
    # Still ready (it answers), with the rejected key shown to the operator.
    assert ready.status_code == 200
    assert ready.json()["upstream_key"] == "rejected"
    assert ready.json()["upstream_last_error"] == "upstream_auth"


def test_an_internal_error_is_not_an_upstream_error() -> None:
    with TestClient(build_app(ScriptedEngine(raise_after=1))) as client:
        ask_sse(client)
        samples = scrape(client)
    errors = [v for (name, _), v in samples.items() if name == "upstream_errors_total"]
    assert errors
    assert sum(errors) == 0
    count = "answer_stream_duration_seconds_count"
    assert value(samples, count, mode="scripted", outcome="failed") == 1


def test_unknown_paths_are_counted_as_unmatched(client: TestClient) -> None:
    client.get("/no-such-page")
    client.get("/another/unknown/page")
    client.get("/conversations/unknown-id")
    samples = scrape(client)
    assert value(samples, "http_requests_total", method="GET", route="unmatched", status="404") == 2
    template = "/conversations/{conversation_id}"
    assert value(samples, "http_requests_total", method="GET", route=template, status="404") == 1


def test_metrics_is_not_in_the_openapi_schema(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_each_app_has_its_own_registry() -> None:
    with TestClient(build_app()) as first, TestClient(build_app()) as second:
        first.get("/no-such-page")
        assert (
            value(
                scrape(first), "http_requests_total", method="GET", route="unmatched", status="404"
            )
            == 1
        )
        assert (
            value(
                scrape(second), "http_requests_total", method="GET", route="unmatched", status="404"
            )
            is None
        )


# --- the stream observer, without HTTP -----------------------------------------------------


async def _events(script: list[AnswerEvent]) -> AsyncGenerator[AnswerEvent, None]:
    for event in script:
        yield event


def _stream(script: list[AnswerEvent]) -> AnswerStream:
    return AnswerStream(AnswerMeta("conversation", "model", "scripted"), (), _events(script))


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_stream_closed_before_its_end_is_interrupted() -> None:
    metrics = Metrics()
    script: list[AnswerEvent] = [TextDelta("Hello"), TextDelta(" world"), AnswerDone("stop")]
    events = answer_events(_stream(script), metrics)
    await anext(events)  # meta
    await anext(events)  # sources
    await anext(events)  # the first delta
    assert _sample(metrics, "open_streams") == 1
    await events.aclose()
    assert _sample(metrics, "open_streams") == 0
    count = "answer_stream_duration_seconds_count"
    assert _sample(metrics, count, mode="scripted", outcome="interrupted") == 1
    assert _sample(metrics, "answer_time_to_first_delta_seconds_count", mode="scripted") == 1


async def test_a_stream_stopped_at_the_token_limit_is_incomplete() -> None:
    metrics = Metrics()
    script: list[AnswerEvent] = [TextDelta("Hel"), AnswerDone("max_output_tokens", Usage(7, 4, 11))]
    frames = [frame async for frame in answer_events(_stream(script), metrics)]
    assert [frame.event for frame in frames] == ["meta", "sources", None, "done"]
    count = "answer_stream_duration_seconds_count"
    assert _sample(metrics, count, mode="scripted", outcome="incomplete") == 1
    assert _sample(metrics, "answer_tokens_total", kind="output") == 4
    assert _sample(metrics, "open_streams") == 0


def test_the_answer_spool_shows_what_is_pending_and_what_was_replayed() -> None:
    store, spool = StoreThatGoesDown(), InMemoryAnswerSpool()
    app = create_app(
        settings(),
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=store,
        spool=spool,
    )
    with TestClient(app) as client:
        store.down = True
        assert client.post(JSON, json={"input": "경력은 어떻게 되나요?"}).status_code == 200
        spooled = scrape(client)
        store.down = False
        deadline = time.monotonic() + 10  # the write-back retries after a second or two
        while spool.kept and time.monotonic() < deadline:
            time.sleep(0.05)
        replayed = scrape(client)

    assert value(spooled, "spooled_answers", state="pending") == 1
    assert value(spooled, "spooled_answers", state="set_aside") == 0
    assert value(spooled, "spooled_answers_replayed_total") == 0
    assert value(replayed, "spooled_answers", state="pending") == 0
    assert value(replayed, "spooled_answers_replayed_total") == 1


def test_no_spool_no_spool_series() -> None:
    with TestClient(build_app()) as client:
        samples = scrape(client)
    assert not any(name.startswith("spooled_answers") for name, _ in samples)
