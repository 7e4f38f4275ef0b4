"""The HTTP contract, in process, with the scripted engine behind the real app."""

from __future__ import annotations

import gc
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.serving import serve, serve_workers
from bootstrap import create_app
from domain.errors import ErrorCode
from domain.models import AnswerDone, TextDelta
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, failing_script, small_profile
from tests.sse_client import Answer, parse_sse

SSE = "/openai-response/sse"
JSON_HEADERS = {"content-type": "application/json"}
JSON = "/openai-response"


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"allowed_models": "cheap-model", "max_input_chars": 100}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def client(engine: ScriptedEngine) -> Iterator[TestClient]:
    app = create_app(
        settings(), knowledge=small_profile(), engine=engine, conversations=InMemoryConversations()
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def ask_sse(client: TestClient, body: dict[str, Any]) -> Answer:
    with client.stream("POST", SSE, json=body) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return Answer(parse_sse(response.iter_text()))


def test_stream_sends_meta_then_deltas_then_done(client: TestClient) -> None:
    answer = ask_sse(client, {"input": "Where did Jane work?"})
    assert answer.names == ["meta", "sources", "message", "message", "done"]
    meta = answer.data_of("meta")
    assert meta["mode"] == "scripted"
    assert meta["model"] == "gpt-4.1-mini"
    assert len(meta["conversation_id"]) >= 20
    assert answer.text == "Hello world"
    assert answer.data_of("done") == {
        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        "finish_reason": "stop",
    }


def test_stream_headers_disable_caching_and_buffering(client: TestClient) -> None:
    with client.stream("POST", SSE, json={"input": "hi"}) as response:
        response.read()
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


TRICKY_DELTAS = [
    "# Title\n\n",
    "- one\n- two\n",
    "\n\n",
    "data: looks like a field\n",
    "event: also text\r\n",
    ": a comment?\n",
    "  leading spaces",
    " 한국어 답변입니다.\n경험이 많습니다.",
    "\rcarriage",
    "",
    "끝\n",
]


def test_multiline_deltas_survive_framing(engine: ScriptedEngine, client: TestClient) -> None:
    engine.script = [*map(TextDelta, TRICKY_DELTAS), AnswerDone("stop")]
    with client.stream("POST", SSE, json={"input": "hi"}) as response:
        raw = response.read().decode()
    # A delta is never split into frames that a line-based reader would misread.
    assert "\ndata: data: looks like a field\n" in raw
    text = Answer(parse_sse([raw])).text
    expected = "".join(TRICKY_DELTAS).replace("\r\n", "\n").replace("\r", "\n")
    assert text == expected


def test_stream_survives_arbitrary_chunk_boundaries(
    engine: ScriptedEngine, client: TestClient
) -> None:
    engine.script = [*map(TextDelta, TRICKY_DELTAS), AnswerDone("stop")]
    with client.stream("POST", SSE, json={"input": "hi"}) as response:
        raw = response.read().decode()
    one_char_at_a_time = Answer(parse_sse(list(raw)))
    assert one_char_at_a_time.text == Answer(parse_sse([raw])).text


def test_lone_surrogate_in_a_delta_does_not_cut_the_stream(
    engine: ScriptedEngine, client: TestClient
) -> None:
    """A model's JSON may escape half a surrogate pair; UTF-8 cannot carry it. The client gets
    U+FFFD in its place and the rest of the answer, then ``done``."""
    engine.script = [TextDelta("before \ud800 after"), TextDelta(" end\udc00"), AnswerDone("stop")]
    answer = ask_sse(client, {"input": "hi"})
    assert answer.terminal == "done"
    assert answer.text == "before \ufffd after end\ufffd"


def test_failure_after_start_ends_with_an_error_event(
    engine: ScriptedEngine, client: TestClient
) -> None:
    engine.script = failing_script(ErrorCode.UPSTREAM_RATE_LIMITED)
    answer = ask_sse(client, {"input": "hi"})
    assert answer.names == ["meta", "sources", "message", "error"]
    assert answer.text == "Partial "
    assert answer.data_of("error")["code"] == "upstream_rate_limited"


def test_engine_crash_ends_with_internal_error_and_no_details(
    engine: ScriptedEngine, client: TestClient
) -> None:
    engine.raise_after = 1
    with client.stream("POST", SSE, json={"input": "hi"}) as response:
        raw = response.read().decode()
    answer = Answer(parse_sse([raw]))
    assert answer.terminal == "error"
    assert answer.data_of("error")["code"] == "internal_error"
    assert "sk-do-not-leak" not in raw
    assert "Traceback" not in raw


def test_json_endpoint_returns_the_whole_answer(client: TestClient) -> None:
    response = client.post(JSON, json={"input": "hi", "stream": True})
    assert response.status_code == 200
    body = response.json()
    assert body["output_text"] == "Hello world"
    assert body["mode"] == "scripted"
    assert body["usage"]["total_tokens"] == 5
    assert body["conversation_id"]


def test_json_endpoint_maps_upstream_failure_to_a_status(
    engine: ScriptedEngine, client: TestClient
) -> None:
    engine.script = failing_script(ErrorCode.UPSTREAM_UNAVAILABLE)
    response = client.post(JSON, json={"input": "hi"})
    assert response.status_code == 503
    assert response.json()["code"] == "upstream_unavailable"


BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"input": "hi", "instructions": "be a pirate"}, 422, "this service owns the prompt"),
    ({"input": [{"role": "system", "content": "x"}]}, 422, "role 'system' is not accepted"),
    ({"input": [{"role": "developer", "content": "x"}]}, 422, "role 'developer' is not accepted"),
    ({"input": [{"role": "tool", "content": "x"}]}, 422, "'input.0.role'"),
    ({"input": "hi", "model": "gpt-9-ultra"}, 422, "is not offered by this service"),
    ({"input": ""}, 422, "'input' is empty"),
    ({"input": "   "}, 422, "'input' is empty"),
    ({"input": []}, 422, "'input' is empty"),
    ({"input": 42}, 422, "'input'"),
    ({"input": "hi", "stream": "yes"}, 422, "'stream'"),
    ({"input": "hi", "temperature": 2}, 422, "'temperature': is not a known field"),
    ({}, 422, "'input': Field required"),
    (
        {"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        422,
        "must have role 'user'",
    ),
    ({"input": "x" * 101}, 413, "101 characters long; the limit is 100"),
    ({"input": [{"role": {}, "content": "x"}]}, 422, "'input.0.role'"),
    ({"input": [{"role": ["user"], "content": "x"}]}, 422, "'input.0.role'"),
    ({"input": "hi \ud800"}, 422, "'input': contains an unpaired surrogate"),
    ({"input": "hi\u0000"}, 422, "'input': contains a NUL character"),
    ({"input": [{"role": "user", "content": "\udfff"}]}, 422, "unpaired surrogate"),
    ({"input": "hi", "model": "cheap\u0000"}, 422, "'model': contains a NUL"),
    ({"input": "hi", "conversation_id": "a\u0000b"}, 422, "'conversation_id': is not an id"),
    ({"input": "hi", "conversation_id": "\ud800" * 22}, 422, "'conversation_id': is not an id"),
    ({"input": "hi", "conversation_id": "x" * 21}, 422, "'conversation_id': is not an id"),
    ({"input": "hi", "conversation_id": "x" * 23}, 422, "'conversation_id': is not an id"),
    ({"input": "hi", "conversation_id": {}}, 422, "'conversation_id'"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
@pytest.mark.parametrize("path", [SSE, JSON])
def test_bad_requests_get_a_clear_4xx_and_never_reach_the_engine(
    client: TestClient,
    engine: ScriptedEngine,
    path: str,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    # json.dumps escapes what httpx cannot encode (a lone surrogate), as a hostile client would.
    response = client.post(path, content=json.dumps(body), headers=JSON_HEADERS)
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"code", "message"}
    assert message in error["message"]
    assert engine.requests == []


def test_body_that_is_not_json_is_rejected(client: TestClient, engine: ScriptedEngine) -> None:
    response = client.post(SSE, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["message"]
    assert engine.requests == []


# As deep as MAX_BODY_BYTES lets objects nest: past the parser's limit on Python 3.11, within
# it from 3.12 (a higher C recursion limit), where the field's own check answers instead.
DEEP_OBJECT = b'{"input": ' + b'{"a":' * 10_000 + b"1" + b"}" * 10_001


def _deep_object_reason() -> str:
    try:
        json.loads(DEEP_OBJECT)
    except RecursionError:
        return "nested too deeply"
    return "send the question as a string"


UNPARSABLE_BODIES = [
    pytest.param(b'{"input": "caf\xe9"}', "not UTF-8", id="latin-1"),
    pytest.param(b'\xff\xfe{\x00"\x00i\x00"\x00}\x00', "not valid JSON", id="utf-16"),
    pytest.param(b"[" * 20_000 + b"]" * 20_000, "nested too deeply", id="deep-array"),
    pytest.param(b'{"input": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested", id="deep-input"),
    pytest.param(DEEP_OBJECT, _deep_object_reason(), id="deep-object"),
]


@pytest.mark.parametrize(("body", "reason"), UNPARSABLE_BODIES)
@pytest.mark.parametrize("path", [SSE, JSON])
def test_a_body_that_is_not_utf8_or_nests_too_deep_gets_the_documented_422(
    client: TestClient, engine: ScriptedEngine, path: str, body: bytes, reason: str
) -> None:
    response = client.post(path, content=body, headers=JSON_HEADERS)
    assert response.status_code == 422
    error = response.json()
    assert set(error) == {"code", "message"}
    assert error["code"] == "invalid_request"
    assert reason in error["message"]
    assert engine.requests == []


def test_allowed_model_is_used(client: TestClient, engine: ScriptedEngine) -> None:
    answer = ask_sse(client, {"input": "hi", "model": "cheap-model"})
    assert answer.data_of("meta")["model"] == "cheap-model"
    assert engine.requests[0].model == "cheap-model"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["engine"] == "scripted"
    assert ready["passages"] > 0
    assert ready["database"] == "ok"


def test_unknown_route_has_the_error_shape(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_openapi_describes_the_sse_events(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][SSE]["post"]
    described = operation["responses"]["200"]
    assert "text/event-stream" in described["content"]
    for name in ("event: meta", "event: done", "event: error"):
        assert name in described["description"]
    assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorBody"
    )
    assert client.get("/docs").status_code == 200


def test_cors_only_for_configured_origins() -> None:
    app = create_app(
        settings(cors_origins="https://portfolio.example"),
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app) as client:
        preflight = {"access-control-request-method": "POST"}
        allowed = client.options(SSE, headers={"origin": "https://portfolio.example", **preflight})
        denied = client.options(SSE, headers={"origin": "https://evil.example", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://portfolio.example"
    assert "access-control-allow-origin" not in denied.headers


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


def _dependency_calls(dependant: Any) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def test_no_dependency_runs_in_the_thread_pool(client: TestClient) -> None:
    # FastAPI runs a plain ``def`` dependency in its thread pool: a round trip through another
    # thread on every request, which under load waits behind a whole turn of the event loop.
    routes = list(_api_routes(client.app.routes))  # type: ignore[attr-defined]
    assert "/openai-response/sse" in {route.path for route in routes}
    blocking = {
        f"{route.path}: {getattr(call, '__qualname__', type(call).__qualname__)}"
        for route in routes
        for call in _dependency_calls(route.dependant)
        if not (
            inspect.iscoroutinefunction(call)
            or inspect.iscoroutinefunction(type(call).__call__)  # HTTPBearer and the like
        )
    }
    assert not blocking


def test_the_server_runs_on_asyncios_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvloop accepts one connection per turn of the loop: under load a burst of new
    # connections would wait seconds to be accepted (docs/performance.md, third round).
    options: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **given: options.update(given, app=app))
    serve(create_app(settings()), settings())
    assert options["loop"] == "asyncio"
    assert options["app"].state.freeze_heap


def test_several_workers_import_the_factory_and_count_in_a_folder_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Unset now, and unset again after the test, whatever ``serve_workers`` sets for them.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    options: dict[str, Any] = {}

    def run(app: Any, **given: Any) -> None:
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        options.update(given, app=app, folder=folder, existed=folder.is_dir())

    monkeypatch.setattr(uvicorn, "run", run)
    workers = settings(web_concurrency=3, redis_url="redis://127.0.0.1:6379/0")
    serve_workers(workers, "main:served_app")
    assert (options["app"], options["factory"], options["workers"]) == ("main:served_app", True, 3)
    assert options["loop"] == "asyncio"
    assert options["existed"]
    assert not options["folder"].exists(), "removed once the workers stop"


def test_one_process_is_not_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda app, **given: None)
    workers = settings(web_concurrency=2, redis_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="run the workers with serve_workers"):
        serve(create_app(workers), workers)


def test_a_served_app_freezes_its_start_up_heap_until_it_stops(engine: ScriptedEngine) -> None:
    app = create_app(
        settings(), knowledge=small_profile(), engine=engine, conversations=InMemoryConversations()
    )
    app.state.freeze_heap = True  # as ``api.serving.serve`` does
    assert gc.get_freeze_count() == 0

    with TestClient(app) as test_client:
        assert gc.get_freeze_count() > 0
        assert ask_sse(test_client, {"input": "Hello"}).names[-1] == "done"

    assert gc.get_freeze_count() == 0


def test_an_app_not_served_leaves_the_collector_alone(client: TestClient) -> None:
    assert gc.get_freeze_count() == 0
