"""The terminal client: its SSE parser, and how each way a stream can end reaches the terminal.

The server is a fake transport (``httpx2.MockTransport``) that replays scripted bytes;
tests/e2e/test_cli.py runs the real command against the real app.
"""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx2
import pytest

from client.ask import (
    EXIT_ANSWER_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    Console,
    Options,
    ask,
    parse_arguments,
)
from common.sse import Event, EventStreamParser

# --- the parser -----------------------------------------------------------------------------

ANSWER = "## 김민지 요약\n\n- Go, Python\n\ndata: not a field\n 끝 "


def frame(data: str, event: str | None = None, newline: str = "\n") -> str:
    lines = [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return newline.join(lines) + newline * 2


def parse(chunks: list[bytes]) -> list[Event]:
    parser = EventStreamParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.close()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_multiline_delta_survives_framing_at_every_chunk_boundary(newline: str) -> None:
    stream = (
        f": ping{newline}"
        + frame('{"conversation_id":"c1"}', "meta", newline)
        + frame(ANSWER, newline=newline)
        + frame("", newline=newline)
        + frame('{"finish_reason":"stop"}', "done", newline)
    ).encode()
    expected = [
        Event("meta", '{"conversation_id":"c1"}'),
        Event("message", ANSWER),
        Event("message", ""),
        Event("done", '{"finish_reason":"stop"}'),
    ]
    assert parse([stream]) == expected
    assert parse([bytes([byte]) for byte in stream]) == expected
    for cut in range(1, len(stream)):  # CRLF pairs and UTF-8 characters split included
        assert parse([stream[:cut], stream[cut:]]) == expected, cut


def test_one_leading_space_is_dropped_and_comments_skipped() -> None:
    stream = b":comment\ndata:no space\ndata:  two spaces\ndata\n\n"
    assert parse([stream]) == [Event("message", "no space\n two spaces\n")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse([b"event: done\n\nevent: x\nid: 7\n\n"]) == []


def test_event_cut_before_its_blank_line_is_discarded() -> None:
    assert parse([b'event: done\ndata: {"finish_reason":"stop"}\r']) == []
    assert parse([b"data: whole\n\ndata: cut"]) == [Event("message", "whole")]


def test_blank_line_ended_by_the_final_cr_dispatches() -> None:
    assert parse([b"data: last\r\r"]) == [Event("message", "last")]


def test_byte_order_mark_id_retry_and_unknown_fields() -> None:
    parser = EventStreamParser()
    events = parser.feed("\ufeffid: 42\nretry: 1500\nfoo: bar\ndata: x\n\n".encode())
    assert events == [Event("message", "x", last_event_id="42")]
    assert parser.retry_ms == 1500


# --- the command ----------------------------------------------------------------------------

SOURCES = [
    {"id": 1, "source": "ko/프로젝트.md", "heading": "김민지 프로젝트", "snippet": "…"},
    {"id": 2, "source": "resume.pdf", "heading": "Experience", "snippet": "…", "page": 2},
]
META = {"conversation_id": "conv-1", "model": "offline", "mode": "offline"}


def sse_body(*frames: str) -> list[bytes]:
    return [f.encode() for f in frames]


def answer_frames(*deltas: str, done: dict[str, Any] | None = None) -> list[str]:
    frames = [
        frame(json.dumps(META), "meta"),
        frame(json.dumps(SOURCES, ensure_ascii=False), "sources"),
        ": ping\n\n",
    ]
    frames += [frame(delta) for delta in deltas]
    frames.append(frame(json.dumps(done or {"usage": None, "finish_reason": "stop"}), "done"))
    return frames


class FakeServer:
    """Answers every request with a scripted response and keeps the requests."""

    def __init__(
        self,
        chunks: Sequence[bytes] | Callable[[], Iterator[bytes]] = (),
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.chunks = chunks
        self.status = status
        self.headers = {"content-type": "text/event-stream; charset=utf-8", **(headers or {})}
        self.error = error
        self.requests: list[httpx2.Request] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        content = self.chunks() if callable(self.chunks) else iter(self.chunks)
        return httpx2.Response(self.status, headers=self.headers, content=content)

    @property
    def body(self) -> Any:
        return json.loads(self.requests[-1].content)


def run(fake: FakeServer, out: io.StringIO | None = None, **options: Any) -> tuple[int, str, str]:
    out, err = out or io.StringIO(), io.StringIO()
    settings = Options(
        **{"question": "어떤 프로젝트를 했나요?", "server": "http://ask.test", **options}
    )
    console = Console(out, err, quiet=settings.quiet)
    status = ask(settings, console, transport=httpx2.MockTransport(fake.handle))
    return status, out.getvalue(), err.getvalue()


def test_answer_goes_to_stdout_exactly_and_the_rest_to_stderr() -> None:
    server = FakeServer(sse_body(*answer_frames("## 요약\n\n", "- [1] Go", "\n- [2] PDF")))
    status, out, err = run(server)
    assert status == EXIT_OK
    assert out == "## 요약\n\n- [1] Go\n- [2] PDF\n"
    assert err == (
        "\nSources:\n"
        "  [1] ko/프로젝트.md — 김민지 프로젝트\n"
        "  [2] resume.pdf, p. 2 — Experience\n"
        "conversation: conv-1  "
        '(continue: uv run ask --server http://ask.test --conversation=conv-1 "...")\n'
    )
    assert server.requests[0].url == "http://ask.test/openai-response/sse"
    assert server.requests[0].headers["accept"] == "text/event-stream"
    assert server.body == {"input": "어떤 프로젝트를 했나요?"}


def test_answer_ending_with_a_newline_gets_no_second_one() -> None:
    status, out, _ = run(FakeServer(sse_body(*answer_frames("Line\n"))), sources=False)
    assert (status, out) == (EXIT_OK, "Line\n")


def test_follow_up_sends_the_conversation_and_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASK_SERVER", "http://ask.test")
    server = FakeServer(sse_body(*answer_frames("Sora.")))
    status, _, err = run(server, conversation="conv-1", model="gpt-fake-mini")
    assert status == EXIT_OK
    assert server.body == {
        "input": "어떤 프로젝트를 했나요?",
        "conversation_id": "conv-1",
        "model": "gpt-fake-mini",
    }
    assert 'continue: uv run ask --conversation=conv-1 "..."' in err


def test_printed_command_continues_a_conversation_whose_id_begins_with_a_dash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ASK_SERVER", "http://ask.test")
    # Ids are secrets.token_urlsafe(16): about one in 64 begins with "-".
    conversation_id = "-3q2-5n1x0Wm5u8u6SxQd5g"
    frames = answer_frames("Hi")
    frames[0] = frame(json.dumps({**META, "conversation_id": conversation_id}), "meta")
    _, _, err = run(FakeServer(sse_body(*frames)))
    command = err.rpartition("(continue: ")[2].removesuffix(")\n")
    assert command == f'uv run ask --conversation={conversation_id} "..."'
    follow_up = parse_arguments(shlex.split(command)[3:], None)
    assert (follow_up.conversation, follow_up.question) == (conversation_id, "...")


def test_quiet_prints_the_answer_alone() -> None:
    notice = {"code": "answered_offline", "message": "Answered from the documents."}
    frames = answer_frames("Hi")
    frames.insert(2, frame(json.dumps(notice), "notice"))
    status, out, err = run(FakeServer(sse_body(*frames)), quiet=True)
    assert (status, out, err) == (EXIT_OK, "Hi\n", "")


def test_notices_go_to_stderr_and_agent_steps_are_skipped() -> None:
    meta = {**META, "notice": {"code": "daily_token_budget_spent", "message": "Budget spent."}}
    frames = [
        frame(json.dumps(meta), "meta"),
        frame(json.dumps({"code": "answered_offline", "message": "Offline."}), "notice"),
        frame('{"kind": "handoff", "name": "career"}', "agent"),
        frame("Hi"),
        frame("{}", "something_new"),
        frame('{"finish_reason": "stop"}', "done"),
    ]
    status, out, err = run(FakeServer(sse_body(*frames)))
    assert (status, out) == (EXIT_OK, "Hi\n")
    assert err.startswith("note: Budget spent.\nnote: Offline.\n")


def test_answer_cut_by_the_model_completes_with_a_note() -> None:
    frames = answer_frames("Cut sho", done={"usage": None, "finish_reason": "max_output_tokens"})
    status, out, err = run(FakeServer(sse_body(*frames)), sources=False)
    assert (status, out) == (EXIT_OK, "Cut sho\n")
    assert "note: the answer stopped early (max_output_tokens)" in err


def test_error_event_exits_1_after_the_partial_answer() -> None:
    frames = answer_frames("Part")[:-1]
    frames.append(frame('{"code":"upstream_failed","message":"The model failed."}', "error"))
    status, out, err = run(FakeServer(sse_body(*frames)), sources=False)
    assert (status, out) == (EXIT_ANSWER_FAILED, "Part\n")
    assert "ask: the answer failed: The model failed. (upstream_failed)\n" in err
    assert "conversation: conv-1" in err


def test_stream_ending_without_done_exits_1() -> None:
    frames = [*answer_frames("Part")[:-1], 'event: done\ndata: {"finish_reason": "stop"}\n']
    status, out, err = run(FakeServer(sse_body(*frames)), sources=False)
    assert (status, out) == (EXIT_ANSWER_FAILED, "Part\n")
    assert "the stream ended before the answer was complete" in err


def test_silent_server_mid_answer_exits_1() -> None:
    def chunks() -> Iterator[bytes]:
        yield from sse_body(*answer_frames("Part")[:-1])
        raise httpx2.ReadTimeout("timed out")

    status, out, err = run(FakeServer(chunks), sources=False, timeout=3)
    assert (status, out) == (EXIT_ANSWER_FAILED, "Part\n")
    assert "the server sent nothing for 3 s (--timeout)" in err


def test_ctrl_c_mid_answer_exits_130_keeping_what_arrived() -> None:
    def chunks() -> Iterator[bytes]:
        yield from sse_body(*answer_frames("Part")[:-1])
        raise KeyboardInterrupt

    status, out, err = run(FakeServer(chunks), sources=False)
    assert (status, out) == (EXIT_INTERRUPTED, "Part\n")
    assert "ask: interrupted\n" in err
    assert "conversation: conv-1" in err


class CtrlCOnceOut(io.StringIO):
    """stdout on which Ctrl-C lands the moment ``text`` is out, as a signal can."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self._interrupted = False

    def flush(self) -> None:
        super().flush()
        if not self._interrupted and self.getvalue().endswith(self._text):
            self._interrupted = True
            raise KeyboardInterrupt


def test_ctrl_c_the_moment_a_delta_is_out_still_ends_its_line() -> None:
    out = CtrlCOnceOut("Part")
    status, written, err = run(FakeServer(sse_body(*answer_frames("Part"))), out, sources=False)
    assert (status, written) == (EXIT_INTERRUPTED, "Part\n")
    assert err.startswith("ask: interrupted\n")


ERROR_BODY = {"code": "conversation_not_found", "message": "No conversation has this id."}


@pytest.mark.parametrize(
    ("status", "headers", "body", "exit_status", "message"),
    [
        (
            404,
            {},
            ERROR_BODY,
            EXIT_REFUSED,
            "the server refused the question: No conversation has this id. "
            "(HTTP 404, conversation_not_found)",
        ),
        (422, {}, {"code": "invalid_request", "message": "Too short."}, EXIT_REFUSED, "Too short."),
        (
            429,
            {"retry-after": "7"},
            {"code": "rate_limited", "message": "Too many questions."},
            EXIT_RATE_LIMITED,
            "rate limited: Too many questions. (HTTP 429, rate_limited; retry in 7 s)",
        ),
        (
            503,
            {"retry-after": "5"},
            {"code": "server_shutting_down", "message": "Restarting."},
            EXIT_UNAVAILABLE,
            "the server failed: Restarting. (HTTP 503, server_shutting_down; retry in 5 s)",
        ),
        (502, {}, "<html>Bad Gateway</html>", EXIT_UNAVAILABLE, "Bad Gateway (HTTP 502)"),
    ],
)
def test_http_errors_print_the_servers_message(
    status: int, headers: dict[str, str], body: Any, exit_status: int, message: str
) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json", **headers}
    server = FakeServer([content.encode()], status=status, headers=headers)
    result, out, err = run(server)
    assert (result, out) == (exit_status, "")
    assert message in err


def test_wrong_address_is_named() -> None:
    server = FakeServer([b"<html/>"], status=404, headers={"content-type": "text/html"})
    status, _, err = run(server, server="http://ask.test/health")
    assert status == EXIT_REFUSED
    assert "is http://ask.test/health the service's base URL?" in err


def test_page_that_is_not_an_event_stream_exits_5() -> None:
    server = FakeServer([b"<html/>"], headers={"content-type": "text/html"})
    status, _, err = run(server)
    assert status == EXIT_UNAVAILABLE
    assert "answered text/html, not an event stream" in err


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (httpx2.ConnectError("[Errno 111] Connection refused"), "Is the service running"),
        (httpx2.ConnectTimeout("timed out"), "no connection within 10 s"),
        (httpx2.ReadTimeout("timed out"), "no answer within 60 s"),
    ],
)
def test_unreachable_server_exits_5(error: Exception, message: str) -> None:
    status, out, err = run(FakeServer(error=error))
    assert (status, out) == (EXIT_UNAVAILABLE, "")
    assert err.startswith("ask: cannot reach http://ask.test: ")
    assert message in err


# --- arguments ------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def piped(text: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="ascii")


def test_question_comes_from_stdin_as_utf8_whatever_the_locale() -> None:
    assert parse_arguments([], piped("그 전에는 어디서 일했나요?\n")).question == (
        "그 전에는 어디서 일했나요?"
    )
    assert parse_arguments(["-"], piped("\ufeffQ?")).question == "Q?"
    assert parse_arguments(["asked"], piped("ignored")).question == "asked"


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        ([], Terminal(), "give a question"),
        ([], None, "give a question"),
        (["  "], None, "the question is empty"),
        ([], piped("\n"), "stdin held no question"),
        (["--server", "localhost:8000", "hi"], None, "is not an http(s) URL"),
        (["--timeout", "0", "hi"], None, "is not a positive number of seconds"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], stdin: io.TextIOBase | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_arguments(argv, stdin)  # type: ignore[arg-type]
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_korean_typed_under_a_c_locale_is_read_as_utf8() -> None:
    # With an ASCII locale, Python hands over the UTF-8 bytes of argv as surrogate escapes.
    typed = "어떤 프로젝트?".encode().decode("ascii", "surrogateescape")
    assert parse_arguments([typed], None).question == "어떤 프로젝트?"


def test_server_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASK_SERVER", "https://ask.example.com/")
    options = parse_arguments(["hi"], None)
    assert options.url == "https://ask.example.com/openai-response/sse"
    assert parse_arguments(["-s", "http://127.0.0.1:9000", "hi"], None).server == (
        "http://127.0.0.1:9000"
    )
