"""Start-up fails fast, with a message that names the setting to fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from testing.app_server import PROJECT_ROOT, free_port

pytestmark = pytest.mark.e2e


def start(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # If a case wrongly starts, it serves on a free port until the timeout fails the test.
    env = {"PATH": os.environ.get("PATH", ""), "PORT": str(free_port()), **environment}
    return subprocess.run(
        [sys.executable, "main.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"ENGINE": "responses"}, "ENGINE=responses needs OPENAI_API_KEY"),
        ({"ENGINE": "gpt"}, "ENGINE: Input should be 'auto', 'offline', 'responses' or 'agents'"),
        ({"KNOWLEDGE_DIR": "/nonexistent/profile"}, "KNOWLEDGE_DIR"),
        ({"MAX_INPUT_CHARS": "zero", "OPENAI_API_KEY": "sk-should-not-appear"}, "MAX_INPUT_CHARS"),
        ({"PORT": "70000"}, "PORT"),
        ({"WEB_CONCURRENCY": "2"}, "WEB_CONCURRENCY=2 needs REDIS_URL"),
        (
            {
                "WEB_CONCURRENCY": "4",
                "REDIS_URL": "redis://127.0.0.1:6379/13",
                "DATABASE_URL": "sqlite+aiosqlite://",
            },
            "WEB_CONCURRENCY=4 needs a database the workers share",
        ),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(
    environment: dict[str, str], message: str
) -> None:
    result = start(environment)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "sk-should-not-appear" not in result.stderr + result.stdout


def test_a_database_that_cannot_be_reached_stops_start_up_without_a_trace() -> None:
    # Nothing listens there: the migrations fail, and Starlette hands uvicorn the traceback.
    url = f"postgresql+asyncpg://ask:pw-secret-9@127.0.0.1:{free_port()}/ask"
    result = start({"DATABASE_URL": url})
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "Application startup failed" in output
    assert "Traceback" not in output
    assert "pw-secret-9" not in output
