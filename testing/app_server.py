"""The real app under uvicorn in a child process on a free port, as a deployment runs it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RunningApp:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stored_messages(self, conversation_id: str) -> list[dict[str, Any]]:
        """The conversation as ``GET /conversations/{id}`` returns it."""
        response = httpx2.get(f"{self.base_url}/conversations/{conversation_id}", timeout=5)
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    def wait_for_messages(self, conversation_id: str, count: int) -> list[dict[str, Any]]:
        """The stored messages once there are ``count`` (an answer is stored as it ends)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stored = self.stored_messages(conversation_id)
            if len(stored) >= count:
                return stored
            time.sleep(0.05)
        raise AssertionError(f"not stored: {self.stored_messages(conversation_id)}")


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """Only what a child process needs: a developer's own OPENAI_* or REDIS_URL must not leak
    into the app under test or under load."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", tempfile.gettempdir()),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, as a deployment stops it; SIGKILL if it has not exited after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_healthy(app: RunningApp, deadline_seconds: float) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"the app exited with {app.process.returncode}:\n{app.log()}")
        try:
            if httpx2.get(f"{app.base_url}/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"the app did not become healthy in {deadline_seconds}s:\n{app.log()}")


@contextmanager
def run_app(
    environment: Mapping[str, str], *, via: str = "uvicorn", startup_timeout: float = 30.0
) -> Iterator[RunningApp]:
    """Start ``uvicorn main:app`` (or ``python main.py``) with only ``environment`` set."""
    port = free_port()
    spool_folder = tempfile.mkdtemp(prefix="ask-spool-")
    env = child_environment(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            # Every e2e request comes from 127.0.0.1; tests of the limit turn it on themselves.
            "RATE_LIMIT_PER_MINUTE": "0",
            # Each app its own spool: one spool's answers belong to one database.
            "ANSWER_SPOOL": str(Path(spool_folder) / "answer-spool.sqlite3"),
            **environment,
        }
    )
    if via == "uvicorn":
        # The event loop python main.py serves on (api.app.serve), as main.py advises.
        command = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--timeout-graceful-shutdown", "5", "--loop", "asyncio"]
    else:
        command = [sys.executable, "main.py"]
    with tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False) as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and app
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    app = RunningApp(f"http://127.0.0.1:{port}", process, Path(log_file.name))
    try:
        _wait_until_healthy(app, startup_timeout)
        yield app
    finally:
        stop(process, timeout=10)
        app.log_path.unlink(missing_ok=True)
        shutil.rmtree(spool_folder, ignore_errors=True)
