"""``ask``, the installed command, against the real app: what a person at a terminal sees.

The command runs in a child process with a C locale and an ASCII ``PYTHONIOENCODING``, so
Korean on stdout proves the client writes UTF-8 whatever the machine is set to.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest

from testing.app_server import PROJECT_ROOT, RunningApp, free_port
from testing.fake_responses_api import RunningFake, Scenario

pytestmark = pytest.mark.e2e

# The console script `uv sync` installs from [project.scripts].
ASK = str(Path(sys.executable).with_name("ask"))
CONVERSATION = re.compile(r"^conversation: (\S+)  \(continue: uv run ask --conversation=\1 ", re.M)


def environment(app: RunningApp | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LC_ALL": "C",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONUTF8": "0",
        "PYTHONIOENCODING": "ascii",
    }
    if app is not None:
        env["ASK_SERVER"] = app.base_url
    return env


def ask(
    app: RunningApp | None, *arguments: str, stdin: str | None = None, command: str = ASK
) -> subprocess.CompletedProcess[bytes]:
    command_line = [command] if command == ASK else [sys.executable, "-m", "client"]
    return subprocess.run(  # noqa: S603 - our own command
        [*command_line, *arguments],
        cwd=PROJECT_ROOT,
        env=environment(app),
        input=None if stdin is None else stdin.encode(),
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        timeout=30,
        check=False,
    )


def conversation_of(stderr: str) -> str:
    match = CONVERSATION.search(stderr)
    assert match, stderr
    return match.group(1)


def stored(app: RunningApp, conversation_id: str, count: int) -> list[dict[str, Any]]:
    """The conversation's messages, once it has ``count`` (an answer is stored when it ends)."""
    deadline = time.monotonic() + 5
    while True:
        response = httpx2.get(f"{app.base_url}/conversations/{conversation_id}")
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        if len(messages) >= count:
            return messages
        assert time.monotonic() < deadline, f"only {len(messages)} messages: {messages}"
        time.sleep(0.05)


def test_korean_question_streams_the_answer_to_stdout(offline_app: RunningApp) -> None:
    result = ask(offline_app, "어떤 프로젝트를 했나요?")
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 0, stderr
    answer = result.stdout.decode("utf-8")
    assert answer.startswith("지원자의 문서에 따르면 다음과 같습니다.")
    assert "\nSources:\n  [1] ko/" in stderr
    _, reply = stored(offline_app, conversation_of(stderr), 2)
    # Exactly the answer the server stored, ending with one newline.
    assert answer == reply["content"] + ("" if reply["content"].endswith("\n") else "\n")


def test_conversation_option_continues_the_conversation(offline_app: RunningApp) -> None:
    first = ask(offline_app, "--no-sources", "When can she start?")
    assert first.returncode == 0
    conversation_id = conversation_of(first.stderr.decode())
    follow_up = "그 전에는 어디서 일했나요?"
    # "--conversation=ID", the form the command prints: an id may begin with "-".
    continued = f"--conversation={conversation_id}"
    second = ask(offline_app, continued, "-", stdin=follow_up, command="-m")
    assert second.returncode == 0, second.stderr.decode()
    assert conversation_of(second.stderr.decode()) == conversation_id
    messages = stored(offline_app, conversation_id, 4)
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "completed"),
        ("assistant", "completed"),
        ("user", "completed"),
        ("assistant", "completed"),
    ]
    assert messages[2]["content"] == follow_up


def test_unknown_conversation_is_refused_with_the_servers_message(
    offline_app: RunningApp,
) -> None:
    result = ask(offline_app, "--conversation=" + "A" * 22, "hi")
    assert (result.returncode, result.stdout) == (3, b"")
    assert "No conversation has this 'conversation_id'" in result.stderr.decode()
    assert "(HTTP 404, conversation_not_found)" in result.stderr.decode()


def test_unreachable_server_exits_5() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    result = ask(None, "--server", server, "hi")
    assert (result.returncode, result.stdout) == (5, b"")
    assert result.stderr.decode().startswith(f"ask: cannot reach {server}: ")


DELTAS = [
    "## 요약\n\n",
    "- Go",
    ", Python\n",
    "data: like a field\n",
    "\n\n\n",
    "경험 ",
    "\r\n",
    "끝",
]


def test_deltas_reach_stdout_exactly(openai_app: RunningApp, upstream: RunningFake) -> None:
    upstream.api.enqueue(Scenario(deltas=DELTAS))
    result = ask(openai_app, "--quiet", "요약해 주세요")
    assert (result.returncode, result.stderr) == (0, b"")
    # SSE has no way to carry CR: the server sends CRLF as a line break.
    assert result.stdout.decode("utf-8") == "".join(DELTAS).replace("\r\n", "\n") + "\n"


def test_answer_failing_mid_stream_exits_1(openai_app: RunningApp, upstream: RunningFake) -> None:
    upstream.api.enqueue(Scenario(deltas=["Half an ", "answer"], terminal="failed"))
    result = ask(openai_app, "Tell me about Minji")
    stderr = result.stderr.decode()
    assert (result.returncode, result.stdout) == (1, b"Half an answer\n")
    assert "ask: the answer failed: " in stderr
    assert "(upstream_failed)" in stderr
    conversation_of(stderr)


def read_until(stream: IO[bytes], expected: bytes, timeout_seconds: float) -> bytes:
    """What ``stream`` gave until ``expected`` arrived, it ended, or the time ran out."""
    received = b""
    deadline = time.monotonic() + timeout_seconds
    while expected not in received:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            received += chunk
    return received


def _default_sigint() -> None:
    # A shell running CI in the background may hand its children SIGINT ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_closes_the_stream_and_the_server_keeps_the_partial_answer(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.enqueue(Scenario(deltas=["one ", "two "], terminal="stall", stall_seconds=30))
    process = subprocess.Popen(  # noqa: S603 - our own command
        [ASK, "hi"],
        cwd=PROJECT_ROOT,
        env=environment(openai_app),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )
    assert process.stdout is not None
    received = read_until(process.stdout, b"two ", timeout_seconds=10)
    assert received == b"one two ", "the deltas are written as they arrive"
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr.decode()
    assert received + rest == b"one two \n"
    assert "ask: interrupted\n" in stderr.decode()
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1, timeout_seconds=5)
    messages = stored(openai_app, conversation_of(stderr.decode()), 2)
    assert (messages[-1]["content"], messages[-1]["status"]) == ("one two ", "interrupted")
