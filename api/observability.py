"""What an operator sees of the service: JSON logs, a request id, Prometheus metrics.

Kept in ``api/``: the domain and the use cases log through the standard ``logging`` module
and know nothing of the format, the request id or the metrics.

- **Logs** are one JSON object per line (``LOG_FORMAT=json``) or plain text, on standard
  error. A log line never carries a stack trace: the formatters drop ``exc_info`` and
  ``stack_info`` and keep only the exception's type, so even a stray ``logger.exception``
  cannot print an upstream body or a key. Request bodies and headers are never logged.
- **Request id**: ``X-Request-ID`` from the client when it is a sane token, else a new one;
  every log record of the request carries it (a ``ContextVar`` copied onto records by a
  filter), and so does every response, SSE and error responses included.
- **Metrics** live on a registry of the app's own, served at ``GET /metrics``. With several
  worker processes (``WEB_CONCURRENCY``), ``prometheus_client``'s multiprocess mode adds up
  the workers' counters, histograms and open streams, whichever worker answers the scrape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from time import perf_counter
from types import TracebackType
from typing import Literal

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from application.spool import SpooledAnswers
from domain.errors import ErrorCode
from domain.models import ToolServerHealth, Usage
from domain.ports import ToolServers
from domain.protected import TAXONOMY
from settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Client libraries that log request details (prompts, URLs, every SSE chunk) at DEBUG and
# INFO: kept at WARNING so answers and questions stay out of the logs.
QUIET_LOGGERS = ("openai", "httpx2", "httpcore2", "bm25s", "sse_starlette", "aiosqlite")

# Probes that run every few seconds: logged at DEBUG unless they fail.
_PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_logger = logging.getLogger("api.access")


def current_request_id() -> str | None:
    """The id of the request being handled, or ``None`` outside a request."""
    return _request_id.get()


# --- Logs ----------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Copies the current request id onto every record that passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def _iso_utc(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)", re.MULTILINE)


def _without_trace(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with no traceback or stack, naming the exception type instead.

    A copy, so other handlers (a test's ``caplog``) see the record as it was logged.
    """
    # A traceback already formatted into the message: Starlette hands uvicorn one when the
    # app's start-up fails, and uvicorn logs it as it is.
    traceback_text = isinstance(record.msg, str) and record.msg.startswith(_TRACEBACK)
    if not (record.exc_info or record.exc_text or record.stack_info or traceback_text):
        return record
    clean = logging.makeLogRecord(record.__dict__)
    exception = record.exc_info[1] if record.exc_info else None
    if exception is not None:
        clean.error_type = type(exception).__name__
    if traceback_text:
        # The exception's line: unindented, its qualified name first (the last one, if chained).
        names = _EXCEPTION_LINE.findall(record.getMessage())
        clean.error_type = names[-1].rsplit(".", 1)[-1] if names else "unknown"
        clean.msg, clean.args = "an error with a traceback (left out of the log)", None
    clean.exc_info = None
    clean.exc_text = None
    clean.stack_info = None
    return clean


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # uvicorn adds an ANSI-coloured copy of its messages; one copy is enough.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_utc(record)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_without_trace(record))


class TextLogFormatter(logging.Formatter):
    """``time LEVEL logger [request_id] message``, for reading logs in a terminal."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            defaults={"request_id": "-"},
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_utc(record)

    def format(self, record: logging.LogRecord) -> str:
        clean = _without_trace(record)
        line = super().format(clean)
        error_type = getattr(clean, "error_type", None)
        return f"{line} ({error_type})" if error_type else line


class _StandardErrorHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (tests swap it), and never prints a trace."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's default prints a traceback (with the record's arguments) to stderr.
        note = {"level": "ERROR", "logger": "logging", "message": "could not write a record"}
        with contextlib.suppress(Exception):  # nowhere left to report to
            sys.stderr.write(json.dumps({**note, "source": record.name}) + "\n")


def configure_logging(level: str, fmt: Literal["json", "text"] = "json") -> None:
    """Send every log record, uvicorn's included, through one handler in ``fmt``.

    Idempotent: a second call replaces the handler of the first. Other handlers on the root
    logger (pytest's) are left alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StandardErrorHandler)]:
        root.removeHandler(handler)
    handler = _StandardErrorHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's CLI configures its loggers before it imports the app: take them back.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn").setLevel(level.upper())
    logging.getLogger("uvicorn.error").setLevel(logging.NOTSET)
    # Our access line replaces uvicorn's: it has the route, the duration and the request id,
    # and leaves out the query string. Without handlers uvicorn skips formatting its own.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# --- Metrics -------------------------------------------------------------------------------

_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FIRST_DELTA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30)
_STREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)

Outcome = Literal["completed", "incomplete", "failed", "interrupted"]


class Metrics:
    """The service's Prometheus metrics, on a registry of the app's own.

    One registry per app, not the global one, so that tests can build many apps. ``exposed``
    is what ``GET /metrics`` serves: the same registry in one process; with several workers
    (``PROMETHEUS_MULTIPROC_DIR`` set, as ``api.serving.serve_workers`` does), every worker's
    values from the directory's files, added up (or, for the answer spool and the MCP
    servers' health, combined as each gauge's ``multiprocess_mode`` says).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = _multiprocess_directory() is not None
        if not self.multiprocess:
            # What the default registry would have: memory, CPU, file descriptors, GC,
            # version; one process's own, so not with several workers.
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        registry = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests, by method, route template ('unmatched' if none) and status.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's end for SSE).",
            ("method", "route"),
            buckets=_REQUEST_BUCKETS,
            registry=registry,
        )
        self.time_to_first_delta = Histogram(
            "answer_time_to_first_delta_seconds",
            "Time from the start of an answer stream to its first text delta.",
            ("mode",),
            buckets=_FIRST_DELTA_BUCKETS,
            registry=registry,
        )
        self.stream_duration = Histogram(
            "answer_stream_duration_seconds",
            "Duration of an answer stream, by engine mode and how it ended.",
            ("mode", "outcome"),
            buckets=_STREAM_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "upstream_errors",
            "Answers that failed because of the model provider, by error code.",
            ("code",),
            registry=registry,
        )
        self.tokens = Counter(
            "answer_tokens",
            "Tokens the model provider reported for answers, by kind.",
            ("kind",),
            registry=registry,
        )
        self.open_streams = Gauge(
            "open_streams",
            "Answer streams open now.",
            registry=registry,
            multiprocess_mode="livesum",  # the live workers' streams, added up
        )
        self.fallbacks = Counter(
            "answer_fallbacks",
            "Answers the offline engine gave in place of the engine that failed (failed_mode), "
            "by the error code that made it step in; each failure also counts in "
            "upstream_errors_total.",
            ("failed_mode", "code"),
            registry=registry,
        )
        self.exposed = registry
        if self.multiprocess:
            self.exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        self.declined = Counter(
            "declined_questions",
            "Questions declined before any engine: by protected category (docs/hiring-safety.md)"
            " or 'undisclosed' (a topic the applicant keeps private). Never the question.",
            ("category",),
            registry=registry,
        )
        self.agent_routes = Counter(
            "agents_routes",
            "Agents answers by how the question reached its agent: 'direct' (the routing rule "
            "chose the specialist, no triage model call) or 'triage'.",
            ("route",),
            registry=registry,
        )
        self.resumes = Counter(
            "answer_resumes",
            "Requests to resume an answer (GET /conversations/{id}/stream, GET "
            "/api/chat/{id}/stream), by outcome: resumed, none (204: nothing in flight), "
            "invalid_last_event_id (400), resume_unavailable (409).",
            ("outcome",),
            registry=registry,
        )
        for outcome in ("resumed", "none", "invalid_last_event_id", "resume_unavailable"):
            self.resumes.labels(outcome)
        # Resolved once: the counters are touched on every answer.
        self._input_tokens = self.tokens.labels("input")
        self._output_tokens = self.tokens.labels("output")
        for code in ErrorCode:  # every known code shows as 0 before its first error
            if _is_upstream(code):
                self.upstream_errors.labels(code.value)
        for category in (*(c.id for c in TAXONOMY), "undisclosed"):
            self.declined.labels(category)

    def close(self) -> None:
        """At a worker's exit: its open streams no longer count (several workers only)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def expect_fallbacks_from(self, mode: str) -> None:
        """Show every upstream code's fallback count for ``mode`` (the configured engine) as 0
        before its first fallback, so that a rate over it is defined from the start."""
        for code in ErrorCode:
            if _is_upstream(code):
                self.fallbacks.labels(mode, code.value)

    def watch_spool(self, spooled: SpooledAnswers | None) -> None:
        """Report the answer spool (ANSWER_SPOOL): ``spooled_answers{state}`` and
        ``spooled_answers_replayed_total``, no series without a spool (a test's store in
        memory)."""
        if spooled is not None:
            spooled.observe(_SpoolMetrics(self.registry))

    def watch_tool_servers(self, servers: ToolServers | None) -> None:
        """Report the health of the agents' MCP servers (MCP_SERVERS): ``mcp_server_up``,
        ``mcp_server_tools`` and ``mcp_server_failures_total``, by server."""
        if servers is not None:
            servers.watch(_ToolServerMetrics(self.registry))

    def answer_stream(self, mode: str) -> AnswerObserver:
        """Observes one streamed answer: ``with metrics.answer_stream(mode) as observed``."""
        return AnswerObserver(self, mode)

    def count_usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self._input_tokens.inc(usage.input_tokens)
            self._output_tokens.inc(usage.output_tokens)

    def count_decline(self, category: str | None) -> None:
        """Count a declined question by its category (bounded: the taxonomy's ids)."""
        if category is not None:
            self.declined.labels(category).inc()

    def count_resume(self, outcome: str) -> None:
        self.resumes.labels(outcome).inc()

    def count_failure(self, code: ErrorCode) -> None:
        if _is_upstream(code):
            self.upstream_errors.labels(code.value).inc()

    def count_fallback(self, failed_mode: str, cause: ErrorCode | None) -> None:
        """The offline engine answered after ``failed_mode`` failed with ``cause``: the failure
        counts as one all the same."""
        if cause is not None:
            self.count_failure(cause)
        self.fallbacks.labels(failed_mode, cause.value if cause is not None else "unknown").inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_duration.labels(method, route).observe(seconds)


class _ToolServerMetrics:
    """The MCP servers' series, pushed as their health changes. Each worker connects to every
    server itself: with several, a server is up (and offers a tool) only where every live
    worker has it (``livemin``), and the failures of all add up."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._up = Gauge(
            "mcp_server_up",
            "1 if the MCP server answered its last check.",
            ("server",),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._tools = Gauge(
            "mcp_server_tools",
            "Tools the MCP server offers the agents now.",
            ("server",),
            registry=registry,
            multiprocess_mode="livemin",
        )
        self._failures = Counter(
            "mcp_server_failures",
            "Failed connections and checks of the MCP server since start-up.",
            ("server",),
            registry=registry,
        )
        self._failures_seen: dict[str, int] = {}

    def tool_server_changed(self, health: ToolServerHealth) -> None:
        name = health.name
        self._up.labels(name).set(1 if health.connected else 0)
        self._tools.labels(name).set(len(health.tools))
        new_failures = health.failures - self._failures_seen.get(name, 0)
        self._failures_seen[name] = health.failures
        self._failures.labels(name).inc(max(0, new_failures))


class _SpoolMetrics:
    """The answer spool's series, pushed as the spool changes. Several workers share one spool
    file: each reads it after its own keeps and write-backs, so the most recent reading of a
    live worker is the spool's (``livemostrecent``), and their write-backs add up."""

    def __init__(self, registry: CollectorRegistry) -> None:
        held = Gauge(
            "spooled_answers",
            "Answers the database could not take, in the answer spool: pending (to be written "
            "back) or set_aside (after too many failed writes; never retried).",
            ("state",),
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self._pending, self._set_aside = held.labels("pending"), held.labels("set_aside")
        self._replayed = Counter(
            "spooled_answers_replayed",
            "Answers written back from the spool to the database since start-up.",
            registry=registry,
        )

    def spool_seen(self, pending: int, set_aside: int) -> None:
        self._pending.set(pending)
        self._set_aside.set(set_aside)

    def answers_replayed(self, count: int) -> None:
        self._replayed.inc(count)


def _multiprocess_directory() -> str | None:
    """Where ``prometheus_client`` keeps the workers' values, if it was set before its import."""
    legacy = os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112 - its old name, still read
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or legacy


def _is_upstream(code: ErrorCode) -> bool:
    return code.value.startswith("upstream_")


class AnswerObserver:
    """One streamed answer's metrics. Per delta it costs one attribute check."""

    __slots__ = ("_first_delta", "_metrics", "_mode", "_open", "_outcome", "_started")

    def __init__(self, metrics: Metrics, mode: str) -> None:
        self._metrics = metrics
        self._mode = mode
        self._first_delta: Histogram | None = metrics.time_to_first_delta.labels(mode)
        self._outcome: Outcome = "interrupted"  # unless a terminal event says otherwise
        self._started = perf_counter()
        self._open = False

    def __enter__(self) -> AnswerObserver:
        self._started = perf_counter()
        self._metrics.open_streams.inc()
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._open:
            return
        self._open = False
        self._metrics.open_streams.dec()
        seconds = perf_counter() - self._started
        self._metrics.stream_duration.labels(self._mode, self._outcome).observe(seconds)

    def delta(self) -> None:
        if self._first_delta is not None:
            self._first_delta.observe(perf_counter() - self._started)
            self._first_delta = None

    def done(self, finish_reason: str, usage: Usage | None) -> None:
        self._outcome = "completed" if finish_reason == "stop" else "incomplete"
        self._metrics.count_usage(usage)

    def failed(self, code: ErrorCode, usage: Usage | None = None) -> None:
        self._outcome = "failed"
        self._metrics.count_failure(code)
        self._metrics.count_usage(usage)

    def switched(self, mode: str, cause: ErrorCode | None, usage: Usage | None) -> None:
        """Another engine answers from now on: the first one's failure and tokens count, and
        ``mode`` labels the stream's metrics (its first delta, its duration)."""
        self._metrics.count_usage(usage)
        self._metrics.count_fallback(self._mode, cause)
        self._mode = mode
        if self._first_delta is not None:
            self._first_delta = self._metrics.time_to_first_delta.labels(mode)


# --- Request id, access log and HTTP metrics -----------------------------------------------


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            return candidate if _SANE_REQUEST_ID.fullmatch(candidate) else None
    return None


def _route_template(scope: Scope) -> str:
    """The matched route's template; ``unmatched`` otherwise, so label values stay few."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class ObservabilityMiddleware:
    """Request id, one access log line and the HTTP metrics for every request.

    Pure ASGI: Starlette's ``BaseHTTPMiddleware`` would get in the way of streaming.
    Installed outermost, so it sees the final status of every response.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = _request_id.set(request_id)
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())
        started = perf_counter()
        status = 500  # if the app raises before it responds
        sent = 0

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = perf_counter() - started
            method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
            route = _route_template(scope)
            self.metrics.observe_request(method, route, status, seconds)
            _log_access(scope, method, route, status, seconds, sent)
            _request_id.reset(token)


def _log_access(
    scope: Scope, method: str, route: str, status: int, seconds: float, sent: int
) -> None:
    # The query string is left out (it may carry data), and so is a path with parameters
    # (a conversation id is as good as a password to that conversation): the route says it.
    path = route if scope.get("path_params") else scope["path"][:200]
    client = scope.get("client")
    quiet = scope["path"] in _PROBE_PATHS and status < 400
    access_logger.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %s %.1fms",
        method,
        path,
        status,
        seconds * 1000,
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "client": client[0] if client else None,
            "bytes": sent,
        },
    )


# --- Installation --------------------------------------------------------------------------


def _exposition(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    async def exposition(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(metrics.exposed), headers={"Content-Type": content_type})

    return exposition


def install_observability(app: FastAPI, settings: Settings) -> Metrics:
    """Logs, request id, metrics and ``GET /metrics``; call last in ``create_app``.

    Last, because the middleware must be the outermost to see every response.
    """
    configure_logging(settings.log_level, settings.log_format)
    # ``*_created`` series double what Prometheus stores and say little (process-wide switch).
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_api_route(
        "/metrics",
        _exposition(metrics),
        methods=["GET"],
        include_in_schema=False,
    )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    return metrics
