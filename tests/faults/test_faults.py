"""Faults injected under the running app: PostgreSQL killed or frozen, Redis frozen, while
answers stream. Nothing is lost (answers the database could not take are written back from the
spool when it returns), and every client gets a whole answer or a clear error, in seconds."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from redis import Redis

from common.sse import Event, EventStreamParser
from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import RunningFake, Scenario
from tests.faults.servers import ThrowawayPostgres, ThrowawayRedis
from tests.metrics_text import sample
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SSE = "/openai-response/sse"
SLOW_DELTAS = tuple(f"word{i} " for i in range(10))
TOKENS_PER_ANSWER = 120 + len(SLOW_DELTAS)  # the fake's usage: 120 in, one per delta out
DATABASE_TIMEOUT = 1.0


def environment(upstream: RunningFake, database_url: str, spool: Path) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": "sk-test-faults-0123456789",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_MODEL": "gpt-fake",
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "FALLBACK_TO_OFFLINE": "false",
        "KNOWLEDGE_WATCH": "false",
        "DATABASE_URL": database_url,
        "DATABASE_TIMEOUT_SECONDS": str(DATABASE_TIMEOUT),
        "ANSWER_SPOOL": str(spool),
    }


class Stream(threading.Thread):
    """One client reading one answer, event by event, in a thread of its own."""

    def __init__(self, app: RunningApp, question: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{app.base_url}{SSE}"
        self.question = question
        self.status: int | None = None
        self.events: list[Event] = []
        self.conversation_id: str | None = None
        self.text_seen = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx2.stream("POST", self.url, json={"input": self.question}, timeout=60) as r:
                self.status = r.status_code
                parser = EventStreamParser()
                for chunk in r.iter_bytes():
                    for event in parser.feed(chunk):
                        self.events.append(event)
                        if event.type == "meta":
                            self.conversation_id = json.loads(event.data)["conversation_id"]
                        elif event.type == "message":
                            self.text_seen.set()
        except BaseException as error:
            self.error = error

    @property
    def text(self) -> str:
        return "".join(event.data for event in self.events if event.type == "message")

    @property
    def terminal(self) -> str | None:
        return self.events[-1].type if self.events else None


def start_streams(app: RunningApp, count: int) -> list[Stream]:
    streams = [Stream(app, "Where did the applicant work?") for _ in range(count)]
    for stream in streams:
        stream.start()
    deadline = time.monotonic() + 20
    for stream in streams:
        assert stream.text_seen.wait(max(0.0, deadline - time.monotonic())), "no text streamed"
    return streams


def finish(streams: list[Stream]) -> None:
    """Every client got the whole answer and ``done``."""
    for stream in streams:
        stream.join(60)
        assert not stream.is_alive(), "a client never got the end of its answer"
        assert stream.error is None, repr(stream.error)
        assert stream.status == 200
        assert stream.terminal == "done", [event.type for event in stream.events]
        assert stream.text == "".join(SLOW_DELTAS)


def stored_answer(app: RunningApp, conversation_id: str) -> dict[str, Any] | None:
    response = httpx2.get(f"{app.base_url}/conversations/{conversation_id}", timeout=10)
    if response.status_code != 200:
        return None
    messages = response.json()["messages"]
    answers = [m for m in messages if m["role"] == "assistant"]
    return answers[0] if answers else None


def all_stored(app: RunningApp, streams: list[Stream]) -> bool:
    for stream in streams:
        assert stream.conversation_id is not None
        answer = stored_answer(app, stream.conversation_id)
        if answer is None:
            return False
        assert answer["content"] == "".join(SLOW_DELTAS)
        assert answer["status"] == "completed"
    return True


@pytest.fixture
def slow_answers(upstream: RunningFake) -> RunningFake:
    upstream.api.default_scenario = Scenario(deltas=SLOW_DELTAS, delay_between_deltas=0.2)
    return upstream


def output_tokens_counted(app: RunningApp) -> float:
    metrics = httpx2.get(f"{app.base_url}/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith('answer_tokens_total{kind="output"}'):
            return float(line.split()[-1])
    return 0.0


def test_answers_streaming_when_postgres_dies_are_stored_when_it_returns(
    postgres: ThrowawayPostgres, slow_answers: RunningFake, spool_path: Path
) -> None:
    with run_app(environment(slow_answers, postgres.url, spool_path)) as app:
        streams = start_streams(app, 10)
        postgres.kill()
        finish(streams)
        # While it is down: a clear error, at once.
        response = httpx2.post(f"{app.base_url}{SSE}", json={"input": "Hello?"}, timeout=30)
        assert response.status_code == 503
        assert response.json()["code"] == "storage_unavailable"
        assert output_tokens_counted(app) == 10 * len(SLOW_DELTAS)
        postgres.start()
        wait_until(lambda: all_stored(app, streams), 60, "the spooled answers stored")
        assert "Traceback" not in app.log()


def test_a_frozen_postgres_gives_a_clear_error_in_seconds_and_loses_nothing(
    postgres: ThrowawayPostgres, slow_answers: RunningFake, spool_path: Path
) -> None:
    with run_app(environment(slow_answers, postgres.url, spool_path)) as app:
        streams = start_streams(app, 5)
        postgres.freeze()
        try:
            started = time.monotonic()
            response = httpx2.post(f"{app.base_url}{SSE}", json={"input": "Hello?"}, timeout=60)
            waited = time.monotonic() - started
            assert response.status_code == 503
            assert response.json()["code"] == "storage_unavailable"
            # The statement or checkout timeout, plus the client's margin: not the freeze.
            assert waited < 4 * DATABASE_TIMEOUT + 3, f"waited {waited:.1f}s"
            finish(streams)
            assert httpx2.get(f"{app.base_url}/ready", timeout=10).status_code == 503
        finally:
            postgres.thaw()
        wait_until(lambda: all_stored(app, streams), 60, "the spooled answers stored")
        # And the service answers again.
        wait_until(
            lambda: httpx2.get(f"{app.base_url}/ready", timeout=10).status_code == 200,
            30,
            "ready again",
        )


def test_a_frozen_redis_costs_one_short_timeout_and_no_tokens_go_uncounted(
    redis: ThrowawayRedis, upstream: RunningFake, spool_path: Path, tmp_path: Path
) -> None:
    env = environment(upstream, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}", spool_path)
    env |= {
        "REDIS_URL": redis.url,
        "RATE_LIMIT_PER_MINUTE": "10000",
        "DAILY_TOKEN_BUDGET": "100000000",
        "REDIS_RETRY_AFTER_SECONDS": "1",
    }
    answer_tokens = 120 + 6  # the fake's default answer: six deltas
    key = f"ask-the-applicant:tokens:{datetime.now(UTC).date().isoformat()}"
    client = Redis.from_url(redis.url, socket_timeout=5)

    def ask() -> str:
        with httpx2.stream(
            "POST", f"{app.base_url}{SSE}", json={"input": "Where?"}, timeout=30
        ) as response:
            assert response.status_code == 200
            body = response.read().decode()
        assert "event: done" in body
        return body

    try:
        with run_app(env) as app:
            ask()
            assert int(client.get(key) or 0) == answer_tokens
            redis.freeze()
            try:
                started = time.monotonic()
                for _ in range(10):
                    ask()
                # One Redis timeout (0.5 s) for the first call, none after: before the breaker
                # the budget alone waited 2 s twice per answer.
                elapsed = time.monotonic() - started
                assert elapsed < 4, f"10 answers took {elapsed:.1f}s with Redis frozen"
                # The answers' events could not go to Redis: a resume on this replica reads
                # them from memory.
                meta = ask().split("event: meta\ndata: ")[1].split("\n")[0]
                conversation_id = json.loads(meta)["conversation_id"]
                replay = httpx2.get(
                    f"{app.base_url}/conversations/{conversation_id}/stream", timeout=5
                )
                assert replay.status_code == 200
                assert "event: done" in replay.text
            finally:
                redis.thaw()

            def counted() -> bool:
                ask()  # after REDIS_RETRY_AFTER_SECONDS, this one tries Redis again
                return int(client.get(key) or 0) >= 12 * answer_tokens

            wait_until(counted, 20, "the tokens spent while Redis was frozen counted")
            assert int(client.get(key) or 0) % answer_tokens == 0
    finally:
        client.close()


def spool_series(app: RunningApp) -> tuple[float, float]:
    """``spooled_answers{state="pending"}`` and ``spooled_answers_replayed_total``, as the worker
    that answers the scrape reports them."""
    metrics = httpx2.get(f"{app.base_url}/metrics", timeout=5).text
    pending = sample(metrics, 'spooled_answers{state="pending"}')
    return pending, sample(metrics, "spooled_answers_replayed_total")


def test_workers_sharing_a_spool_report_it_together(
    postgres: ThrowawayPostgres, redis: ThrowawayRedis, slow_answers: RunningFake, spool_path: Path
) -> None:
    """Two workers (WEB_CONCURRENCY) spool the answers PostgreSQL could not take into one file:
    whichever worker answers a scrape reports the spool's own count, and the answers written
    back by either."""
    env = environment(slow_answers, postgres.url, spool_path)
    env |= {"WEB_CONCURRENCY": "2", "REDIS_URL": redis.url, "SHUTDOWN_GRACE_SECONDS": "1"}
    streams = 10
    with run_app(env, via="main.py", startup_timeout=60) as app:
        answering = start_streams(app, streams)
        postgres.kill()
        finish(answering)
        wait_until(lambda: spool_series(app)[0] == streams, 30, "every answer spooled")
        for _ in range(8):  # the connections go to either worker
            assert spool_series(app) == (streams, 0)
        postgres.start()
        wait_until(lambda: all_stored(app, answering), 60, "the spooled answers stored")
        wait_until(lambda: spool_series(app) == (0, streams), 30, "the write-backs counted")
        for _ in range(8):
            assert spool_series(app) == (0, streams)
