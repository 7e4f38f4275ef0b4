"""``ask "question"``: ask the applicant from a terminal; the answer streams to stdout.

Only the answer goes to stdout, exactly as the server streams it (plus a final newline if it
lacks one), so it pipes cleanly into a file or a markdown viewer. The rest goes to stderr:
notices, the numbered sources the answer cites, errors, and the conversation id with the
command that continues the conversation.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import io
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx2

from common.sse import Event, EventStreamParser

EXIT_OK = 0
EXIT_ANSWER_FAILED = 1
EXIT_USAGE = 2  # argparse's own
EXIT_REFUSED = 3
EXIT_RATE_LIMITED = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: whoever read stdout went away

DEFAULT_SERVER = "http://127.0.0.1:8000"
SERVER_VARIABLE = "ASK_SERVER"
SSE_PATH = "/openai-response/sse"
CONTINUE_COMMAND = "uv run ask"

EXIT_STATUS_HELP = """\
The answer goes to stdout; notices, sources, errors and the conversation id go to stderr.

exit status:
  0    the answer is complete
  1    the answer started but did not complete: the stream ended with an error event,
       broke off, or sent nothing for --timeout seconds (any partial answer is printed)
  2    usage error: bad option, no question
  3    the server refused the question (HTTP 4xx: invalid input, unknown conversation, ...)
  4    rate limited (HTTP 429): the message says when to try again
  5    the server could not be reached, failed (HTTP 5xx) or did not answer in time
  130  interrupted (Ctrl-C): the connection is closed and the server keeps the partial
       answer, marked interrupted
"""


@dataclass(frozen=True)
class Options:
    question: str
    server: str
    conversation: str | None = None
    model: str | None = None
    sources: bool = True
    quiet: bool = False
    connect_timeout: float = 10.0
    timeout: float = 60.0

    @property
    def url(self) -> str:
        return self.server + SSE_PATH

    def body(self) -> dict[str, str]:
        body = {"input": self.question}
        if self.conversation is not None:
            body["conversation_id"] = self.conversation
        if self.model is not None:
            body["model"] = self.model
        return body


def _server_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an http(s) URL; give the service's address, e.g. {DEFAULT_SERVER}"
        )
    return value.strip().rstrip("/")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def default_server() -> str:
    return os.environ.get(SERVER_VARIABLE, "").strip() or DEFAULT_SERVER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ask",
        description="Ask a question about the applicant; the answer streams to stdout.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "question",
        nargs="?",
        help='the question; with "-", or none while stdin is not a terminal, read from stdin',
    )
    parser.add_argument(
        "-c",
        "--conversation",
        metavar="ID",
        help="continue this conversation (its id is printed after each answer); write "
        "--conversation=ID, as an id may begin with '-'",
    )
    parser.add_argument(
        "-s",
        "--server",
        metavar="URL",
        type=_server_url,
        default=default_server(),
        help=f"the service's base URL (default: ${SERVER_VARIABLE}, else {DEFAULT_SERVER}; "
        "now %(default)s)",
    )
    parser.add_argument(
        "-m", "--model", help="one of the server's ALLOWED_MODELS (default: the server's choice)"
    )
    parser.add_argument(
        "--no-sources",
        dest="sources",
        action="store_false",
        help="do not list the sources after the answer",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the answer and errors: no notices, sources or conversation id",
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=10.0,
        help="give up if the server does not accept the connection in time (default: 10)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=60.0,
        help="give up when the server sends nothing for this long; it sends a ping at least "
        "every 15 s while the model thinks (default: 60)",
    )
    return parser


def _read_stdin(stdin: TextIO) -> str:
    """The question as UTF-8, whatever the locale says; a text stream without bytes as is."""
    if not isinstance(stdin, io.TextIOWrapper):
        return stdin.read()
    data: bytes = stdin.buffer.read()
    return data.decode("utf-8-sig")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes the locale could not decode
        return False
    return True


def _as_utf8(argument: str) -> str:
    """An argument the locale could not decode (Korean typed under a C locale) read as UTF-8."""
    if not _is_utf8(argument):
        with contextlib.suppress(UnicodeDecodeError):
            return os.fsencode(argument).decode("utf-8")
    return argument


def parse_arguments(argv: Sequence[str] | None, stdin: TextIO | None) -> Options:
    """The options, or exit 2 with argparse's usage message."""
    parser = build_parser()
    arguments = parser.parse_args([_as_utf8(a) for a in (sys.argv[1:] if argv is None else argv)])
    question: str | None = arguments.question
    if question == "-" or (question is None and stdin is not None and not stdin.isatty()):
        if stdin is None:
            parser.error("'-' reads the question from stdin, but there is no stdin")
        try:
            question = _read_stdin(stdin)
        except UnicodeDecodeError:
            parser.error("the question on stdin is not UTF-8 text")
    if question is None:
        parser.error('give a question, e.g. ask "어떤 프로젝트를 했나요?", or pipe one in')
    texts = [("question", question), ("--conversation", arguments.conversation)]
    for name, value in [*texts, ("--model", arguments.model)]:
        if value is not None and not _is_utf8(value):
            parser.error(f"the {name} is not UTF-8 text")
    if not question.strip():
        parser.error("the question is empty" if arguments.question else "stdin held no question")
    return Options(
        question=question.strip(),
        server=arguments.server,
        conversation=arguments.conversation,
        model=arguments.model,
        sources=arguments.sources,
        quiet=arguments.quiet,
        connect_timeout=arguments.connect_timeout,
        timeout=arguments.timeout,
    )


class Console:
    """stdout for the answer, stderr for everything else, never interleaved mid-line."""

    def __init__(self, out: TextIO, err: TextIO, *, quiet: bool = False) -> None:
        self._out = out
        self._err = err
        self._quiet = quiet
        self._open_line = False
        self.wrote_answer = False

    def answer(self, text: str) -> None:
        if not text:
            return
        # Recorded before the write: Ctrl-C can land as soon as the text is out, and
        # end_answer must then know the line is open.
        self._open_line = not text.endswith("\n")
        self.wrote_answer = True
        self._out.write(text)
        self._out.flush()

    def end_answer(self) -> None:
        """Ends stdout with a newline, so the shell prompt and stderr start on their own line."""
        if self._open_line:
            self._open_line = False
            self._out.write("\n")
            self._out.flush()

    def info(self, message: str) -> None:
        if not self._quiet:
            self._print(message)

    def error(self, message: str) -> None:
        self._print(f"ask: {message}")

    def _print(self, message: str) -> None:
        self.end_answer()
        self._err.write(message + "\n")
        self._err.flush()


def _json_object(data: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(data: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(data)
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass
class _Answer:
    """What the stream has told so far."""

    conversation_id: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    started: bool = False


@dataclass(frozen=True)
class Outcome:
    """How the exchange ended: the exit status and, unless all went well, what happened."""

    status: int
    message: str | None = None


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def _retry_after(value: str | None) -> int | None:
    """Seconds to wait, from ``Retry-After`` as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, math.ceil(moment.timestamp() - time.time()))


def _refusal(response: httpx2.Response) -> Outcome:
    """An HTTP error before the stream: the server's ``{"code", "message"}`` and an exit status."""
    status = response.status_code
    body = _json_object(response.text)
    message = str(body.get("message") or response.reason_phrase or "no reason given")
    details = f"HTTP {status}"
    if body.get("code"):
        details += f", {body['code']}"
    retry = _retry_after(response.headers.get("retry-after"))
    if retry is not None:
        details += f"; retry in {retry} s"
    if status == 429:
        return Outcome(EXIT_RATE_LIMITED, f"rate limited: {message} ({details})")
    if status in (404, 405) and body.get("code") != "conversation_not_found":
        server = str(response.request.url).removesuffix(SSE_PATH)
        details += f"; is {server} the service's base URL?"
    if 400 <= status < 500:
        return Outcome(EXIT_REFUSED, f"the server refused the question: {message} ({details})")
    return Outcome(EXIT_UNAVAILABLE, f"the server failed: {message} ({details})")


def _source_line(source: dict[str, Any]) -> str:
    place = str(source.get("source", "?"))
    if source.get("page") is not None:
        place += f", p. {source['page']}"
    heading = source.get("heading")
    return f"  [{source.get('id', '?')}] {place}" + (f" — {heading}" if heading else "")


class _Relay:
    """Plays one answer stream onto the console."""

    def __init__(self, options: Options, console: Console) -> None:
        self.options = options
        self.console = console
        self.answer = _Answer()

    def play(self, chunks: Iterator[bytes]) -> Outcome:
        """Until ``done`` or ``error``; a body that ends before either is a failure."""
        parser = EventStreamParser()
        for chunk in chunks:
            for event in parser.feed(chunk):
                if (outcome := self._on(event)) is not None:
                    return outcome
        for event in parser.close():
            if (outcome := self._on(event)) is not None:
                return outcome
        return Outcome(EXIT_ANSWER_FAILED, "the stream ended before the answer was complete")

    def _on(self, event: Event) -> Outcome | None:
        if event.type == "message":
            self.console.answer(event.data)
        elif event.type == "meta":
            meta = _json_object(event.data)
            conversation_id = meta.get("conversation_id")
            if isinstance(conversation_id, str) and conversation_id:
                self.answer.conversation_id = conversation_id
            self._notice(meta.get("notice"))
        elif event.type == "sources":
            self.answer.sources = _json_list(event.data)
        elif event.type == "notice":
            self._notice(_json_object(event.data))
        elif event.type == "done":
            finish_reason = _json_object(event.data).get("finish_reason")
            if finish_reason in (None, "stop"):
                return Outcome(EXIT_OK)
            return Outcome(EXIT_OK, f"note: the answer stopped early ({finish_reason})")
        elif event.type == "error":
            error = _json_object(event.data)
            message = error.get("message") or "the server reported an error"
            code = error.get("code") or "no code"
            return Outcome(EXIT_ANSWER_FAILED, f"the answer failed: {message} ({code})")
        # Other events (``agent``, and any added later) are not for a terminal.
        return None

    def _notice(self, notice: object) -> None:
        if isinstance(notice, dict) and notice.get("message"):
            self.console.info(f"note: {notice['message']}")

    def relay(self, response: httpx2.Response) -> Outcome:
        if response.status_code != 200:
            response.read()
            return _refusal(response)
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if media_type != "text/event-stream":
            return Outcome(
                EXIT_UNAVAILABLE,
                f"{self.options.url} answered {media_type or 'without a content type'}, not an "
                "event stream: is --server the Ask the Applicant service?",
            )
        self.answer.started = True
        return self.play(response.iter_bytes())

    def report(self, outcome: Outcome) -> None:
        """After the answer: the sources it may cite, what went wrong, how to go on."""
        console = self.console
        console.end_answer()
        if self.options.sources and console.wrote_answer and self.answer.sources:
            console.info("\nSources:")
            for source in self.answer.sources:
                console.info(_source_line(source))
        if outcome.message is not None:
            if outcome.status == EXIT_OK:
                console.info(outcome.message)
            else:
                console.error(outcome.message)
        conversation_id = self.answer.conversation_id
        if conversation_id is not None:
            command = CONTINUE_COMMAND
            if self.options.server != default_server():
                command += f" --server {shlex.quote(self.options.server)}"
            # "=": an id may begin with "-", which argparse would take for an option.
            command += f" --conversation={shlex.quote(conversation_id)} " + '"..."'
            console.info(f"conversation: {conversation_id}  (continue: {command})")


def ask(
    options: Options, console: Console, *, transport: httpx2.BaseTransport | None = None
) -> int:
    """Sends the question, relays the answer; returns the exit status."""
    relay = _Relay(options, console)
    timeout = httpx2.Timeout(options.timeout, connect=options.connect_timeout)
    headers = {"accept": "text/event-stream", "user-agent": "ask-the-applicant-cli"}
    try:
        with (
            httpx2.Client(timeout=timeout, transport=transport, headers=headers) as http,
            http.stream("POST", options.url, json=options.body()) as response,
        ):
            # Leaving this block closes the connection, also on Ctrl-C: the server then
            # stores the partial answer as interrupted.
            outcome = relay.relay(response)
    except KeyboardInterrupt:
        outcome = Outcome(EXIT_INTERRUPTED, "interrupted")
    except httpx2.TransportError as error:
        outcome = _transport_failure(error, options, started=relay.answer.started)
    relay.report(outcome)
    return outcome.status


def _transport_failure(error: httpx2.TransportError, options: Options, *, started: bool) -> Outcome:
    if started:
        if isinstance(error, httpx2.ReadTimeout):
            reason = f"the server sent nothing for {options.timeout:g} s (--timeout)"
        else:
            reason = f"the connection broke off ({_describe(error)})"
        return Outcome(EXIT_ANSWER_FAILED, f"the answer is incomplete: {reason}")
    if isinstance(error, httpx2.ConnectTimeout):
        reason = f"no connection within {options.connect_timeout:g} s (--connect-timeout)"
    elif isinstance(error, httpx2.TimeoutException):
        reason = f"no answer within {options.timeout:g} s (--timeout)"
    elif isinstance(error, httpx2.ConnectError):
        reason = (
            f"{_describe(error)}. Is the service running (uv run python main.py)? "
            f"Point --server or ${SERVER_VARIABLE} at it"
        )
    else:
        reason = _describe(error)
    return Outcome(EXIT_UNAVAILABLE, f"cannot reach {options.server}: {reason}")


def _use_utf8(*streams: TextIO) -> None:
    """Korean prints as UTF-8 whatever the locale says (the terminal's norm today)."""
    for stream in streams:
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ask`` command; returns its exit status."""
    _use_utf8(sys.stdout, sys.stderr)
    options = parse_arguments(argv, sys.stdin)
    console = Console(sys.stdout, sys.stderr, quiet=options.quiet)
    try:
        return ask(options, console)
    except BrokenPipeError:
        # Keep the interpreter's final flush from failing again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
