"""WEB_CONCURRENCY: ``python main.py`` as several worker processes on one port, sharing Redis
and a SQLite file, as one instance with several cores runs it, and stopped as a deployment
stops it.

Needs Redis (TEST_REDIS_URL); without it the tests skip, except in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import RunningFake, Scenario
from tests.databases import empty_redis
from tests.e2e.conftest import UPSTREAM_KEY
from tests.metrics_text import sample
from tests.sse_client import parse_sse
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("TEST_WORKERS_REDIS_URL", "redis://127.0.0.1:6379/13")
QUESTIONS = ("When can she start?", "어떤 프로젝트를 했나요?", "Kubernetes 경험이 있나요?") * 4


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[RunningApp, Path]]:
    """Two workers (offline engine, no key) and the folder their temporary files go to."""
    empty_redis(REDIS_URL, "TEST_WORKERS_REDIS_URL")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'conversations.db'}",
        "EMBEDDINGS_CACHE": str(tmp_path / "embeddings.sqlite3"),
        "KNOWLEDGE_WATCH": "false",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "TMPDIR": str(temporary),
    }
    with run_app(environment, via="main.py", startup_timeout=60) as app:
        yield app, temporary


def worker_pids(parent: int) -> list[int]:
    """The parent's children that are uvicorn's workers (multiprocessing's spawned processes)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.findall(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[0])


async def ask_all(base_url: str) -> list[str]:
    """Every question at once; the conversation id of each answer, which must end ``done``."""
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:

        async def ask(question: str) -> str:
            response = await client.post("/openai-response/sse", json={"input": question})
            assert response.status_code == 200, response.text
            events = parse_sse([response.content])
            assert events[-1].type == "done", events[-1]
            assert "".join(e.data for e in events if e.type == "message").strip()
            meta = next(e for e in events if e.type == "meta")
            conversation_id: str = re.findall(r'"conversation_id":"([^"]+)"', meta.data)[0]
            return conversation_id

        return await asyncio.gather(*(ask(q) for q in QUESTIONS))


def test_workers_answer_on_one_port_and_count_together(
    workers: tuple[RunningApp, Path],
) -> None:
    app, temporary = workers
    pids = worker_pids(app.process.pid)
    assert len(pids) == 2
    # The parent only supervises: it builds no app (about 60 MB against a worker's 150).
    assert rss_kb(app.process.pid) < 0.7 * min(rss_kb(pid) for pid in pids)

    conversations = asyncio.run(ask_all(app.base_url))

    # Whichever worker answers the scrape, it reports every worker's answers.
    for _ in range(4):
        metrics = httpx2.get(f"{app.base_url}/metrics", timeout=5).text
        answered = 'http_requests_total{method="POST",route="/openai-response/sse",status="200"}'
        assert sample(metrics, answered) == len(QUESTIONS)
        assert sample(metrics, 'answer_time_to_first_delta_seconds_count{mode="offline"}') == len(
            QUESTIONS
        )
        assert sample(metrics, "open_streams") == 0
    # Whichever worker stored a conversation, every worker reads it.
    for conversation_id in conversations * 2:
        assert len(app.wait_for_messages(conversation_id, 2)) == 2
    assert list(temporary.glob("ask-the-applicant-metrics-*"))

    app.process.send_signal(signal.SIGTERM)
    assert app.process.wait(timeout=30) == 0
    assert not list(temporary.glob("ask-the-applicant-metrics-*")), "the metrics folder is left"


def test_sigterm_drains_every_workers_answers_and_stores_them(
    upstream: RunningFake, tmp_path: Path
) -> None:
    """The parent passes SIGTERM on: a worker's answer in flight ends with ``error``
    ``server_shutting_down`` after SHUTDOWN_GRACE_SECONDS, and is stored, as in one process."""
    empty_redis(REDIS_URL, "TEST_WORKERS_REDIS_URL")
    database = f"sqlite+aiosqlite:///{tmp_path / 'conversations.db'}"
    environment = {
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": REDIS_URL,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": upstream.base_url,
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "FALLBACK_TO_OFFLINE": "false",
        "KNOWLEDGE_WATCH": "false",
        "DATABASE_URL": database,
        "SHUTDOWN_GRACE_SECONDS": "1",
        "RESUME_WINDOW_SECONDS": "0",
    }
    upstream.api.enqueue(Scenario(deltas=["Half an answer"], terminal="stall"))
    with run_app(environment, via="main.py", startup_timeout=60) as app:
        with httpx2.stream(
            "POST", f"{app.base_url}/openai-response/sse", json={"input": "Hi"}, timeout=30
        ) as response:
            chunks: list[bytes] = []
            received = response.iter_bytes()
            for chunk in received:
                chunks.append(chunk)
                if any(e.type == "message" for e in parse_sse(chunks)):
                    app.process.send_signal(signal.SIGTERM)
                    break
            chunks += list(received)  # until the worker ends the stream
        events = parse_sse(chunks)
        assert app.process.wait(timeout=30) == 0
        assert "Traceback" not in app.log()
    assert events[-1].type == "error"
    assert '"code":"server_shutting_down"' in events[-1].data
    meta = next(e for e in events if e.type == "meta")
    conversation_id = re.findall(r'"conversation_id":"([^"]+)"', meta.data)[0]
    with run_app({"DATABASE_URL": database, "ENGINE": "offline"}) as restarted:
        stored = restarted.stored_messages(conversation_id)
    assert (stored[1]["content"], stored[1]["status"]) == ("Half an answer", "failed")


def test_workers_add_up_their_mcp_servers_failures(upstream: RunningFake, tmp_path: Path) -> None:
    """Each worker connects to the MCP servers (ENGINE=agents) itself: a server that never
    answers shows down, and every worker's failed attempts count, whichever worker answers."""
    empty_redis(REDIS_URL, "TEST_WORKERS_REDIS_URL")
    servers = tmp_path / "mcp.json"
    never_speaks = [sys.executable, "-c", "raise SystemExit(3)"]
    servers.write_text(
        json.dumps(
            [
                {
                    "name": "broken",
                    "transport": "stdio",
                    "command": never_speaks[0],
                    "args": never_speaks[1:],
                    "timeout_seconds": 5,
                }
            ]
        ),
        encoding="utf-8",
    )
    environment = {
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": REDIS_URL,
        "ENGINE": "agents",
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": upstream.base_url,
        "MCP_SERVERS": str(servers),
        "SEMANTIC_SEARCH": "false",
        "KNOWLEDGE_WATCH": "false",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'conversations.db'}",
        "SHUTDOWN_GRACE_SECONDS": "1",
    }
    failed = "MCP server broken could not connect"
    with run_app(environment, via="main.py", startup_timeout=60) as app:
        # A worker counts its first attempt once its lifespan watches the toolbox, a moment
        # after logging it: scrapes answered by the other worker meanwhile lag by that one.
        started = "Application startup complete"
        wait_until(lambda: app.log().count(started) >= 2, 60, "both workers started")
        seen: list[tuple[int, float, int]] = []
        for _ in range(10):
            # Each attempt is counted before it is logged: the count lies between the two.
            before = app.log().count(failed)
            metrics = httpx2.get(f"{app.base_url}/metrics", timeout=5).text
            time.sleep(0.2)
            after = app.log().count(failed)
            failures = sample(metrics, 'mcp_server_failures_total{server="broken"}')
            assert sample(metrics, 'mcp_server_up{server="broken"}') == 0
            assert sample(metrics, 'mcp_server_tools{server="broken"}') == 0
            seen.append((before, failures, after))
        assert all(before <= failures <= after for before, failures, after in seen), seen
        assert seen[-1][0] >= 2, "both workers tried"
