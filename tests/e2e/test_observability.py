"""The logs and metrics of the real app under ``uvicorn main:app``, as an operator sees them."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx2
import pytest

from testing.app_server import RunningApp

pytestmark = pytest.mark.e2e

# uvicorn's own access line: `INFO:     127.0.0.1:5000 - "POST /path HTTP/1.1" 200 OK`.
UVICORN_ACCESS_LINE = re.compile(r'"[A-Z]+ \S+ HTTP/[\d.]+" \d{3}')


def log_records(app: RunningApp) -> list[dict[str, Any]]:
    lines = [line for line in app.log().splitlines() if line.strip()]
    for line in lines:
        assert not UVICORN_ACCESS_LINE.search(line), line
    return [json.loads(line) for line in lines]  # every line is one JSON object


def access_record(app: RunningApp, request_id: str, deadline_seconds: float = 5) -> dict[str, Any]:
    """The access line is written when the response has ended: wait for it, briefly."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        found = [
            record
            for record in log_records(app)
            if record.get("logger") == "api.access" and record.get("request_id") == request_id
        ]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no access line for request {request_id}:\n{app.log()}")


def test_log_is_json_lines_with_the_request_id_of_each_response(offline_app: RunningApp) -> None:
    with httpx2.stream(
        "POST",
        f"{offline_app.base_url}/openai-response/sse?debug=query-value",
        json={"input": "What projects did the applicant work on?"},
        timeout=15,
    ) as response:
        assert response.status_code == 200
        response.read()
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)

    record = access_record(offline_app, request_id)
    assert record["status"] == 200
    assert record["route"] == "/openai-response/sse"
    assert record["path"] == "/openai-response/sse"
    assert record["level"] == "INFO"
    assert "query-value" not in offline_app.log()

    kept = httpx2.get(
        f"{offline_app.base_url}/no-such-page", headers={"X-Request-ID": "e2e-check-0001"}
    )
    assert kept.status_code == 404
    assert kept.headers["x-request-id"] == "e2e-check-0001"
    assert access_record(offline_app, "e2e-check-0001")["route"] == "unmatched"

    records = log_records(offline_app)
    assert any(record["logger"] == "uvicorn.error" for record in records)  # uvicorn's own, as JSON
    assert not any("Traceback" in json.dumps(record) for record in records)


def test_metrics_are_served_in_the_prometheus_format(offline_app: RunningApp) -> None:
    response = httpx2.get(f"{offline_app.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "upstream_errors_total",
        "answer_tokens_total",
        "open_streams",
    ):
        assert f"\n{name}" in response.text, name
