"""The load generator of ``bench.relay``: a lean asyncio HTTP/1.1 client in a process of its own.

Why not httpx or aiohttp: at tens of thousands of SSE events a second, a general client spends
more CPU per event than the relay being measured, and the client would become the bottleneck.
This one writes each request by hand on a new connection (``Connection: close``, the same for
every target), de-chunks the body, splits the SSE stream on blank lines and only classifies
each event by its first bytes.

The time to first delta (TTFD) runs from opening the connection (the request is written as
soon as it is open) to the arrival of the first *text delta* event: an unnamed event from the
app or the straightforward relay, a ``response.output_text.delta`` event from the upstream.

Protocol with the parent (one JSON object per line): it prints ``{"event": "ready"}``, then
for each job (:class:`Job` as JSON) it reads on stdin, runs it and prints
``{"event": "result", ...}``, until stdin closes. In
``hold`` mode it prints ``{"event": "all_open", ...}`` as soon as every stream has received its
first delta (or ended), so the parent can sample the server's memory while all are open.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

monotonic = time.monotonic

# What an SSE event is, for counting.
OTHER, DELTA, DONE, FAILED, FALLBACK = range(5)
DELTA_MARK = b"|"
"""``bench.upstream.DELTA_MARK``, which ends every delta of the benchmark's answers."""

OK_OUTCOMES = frozenset({"ok", "hung_up"})
"""``hung_up``: the client closed on purpose after ``close_after_deltas`` (warm-up only)."""
ERROR_OUTCOMES = ("connect", "status", "missing_done", "timeout", "error_event", "fallback")
"""Everything that counts as an error; ``cancelled`` (cut at the end of the window) does not."""

_NAMED: dict[bytes, int] = {b"done": DONE, b"error": FAILED, b"notice": FALLBACK}
_DIRECT_FAILED = (b"event: response.failed", b"event: error", b"event: response.incomplete")


def classify_sse(event: bytes) -> int:
    """The app's and the straightforward relay's events: unnamed ones carry text deltas.

    A ``notice`` event means the app answered offline instead of relaying the upstream.
    """
    if event.startswith(b"data:"):
        return DELTA
    name: bytes | None = None
    has_data = False
    for line in event.splitlines():
        if line.startswith(b"event:"):
            name = line[6:].strip()
        elif line.startswith(b"data:"):
            has_data = True
    if name is None:
        return DELTA if has_data else OTHER
    return _NAMED.get(name, OTHER)


def classify_direct(event: bytes) -> int:
    """The Responses API's own events, as the upstream sends them."""
    if event.startswith(b"event: response.output_text.delta"):
        return DELTA
    if event.startswith(b"event: response.completed"):
        return DONE
    if event.startswith(_DIRECT_FAILED):
        return FAILED
    return OTHER


@dataclass(frozen=True)
class Job:
    host: str
    port: int
    path: str
    bodies: list[str]
    """Request bodies (JSON), used in turn."""
    kind: Literal["sse", "direct"]
    mode: Literal["loop", "hold"]
    """``loop``: ``concurrency`` clients ask again and again until ``window_end``;
    ``hold``: ``concurrency`` streams opened at once, each read to its end."""
    concurrency: int
    start_at: float
    """``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process on the machine)."""
    window_start: float
    window_end: float
    idle_timeout: float
    total_timeout: float
    close_after_deltas: int = 0
    """Hang up after this many deltas (for warm-ups); 0 reads every stream to its end."""
    ramp: float = 0.0
    """``loop``: client k starts ``ramp * (k + ramp_phase) / concurrency`` seconds after
    ``start_at``, so that answers longer than the warm-up do not all begin together, round
    after round (a steady state of ``concurrency`` open streams, not bursts of starts)."""
    ramp_phase: float = 0.0
    """Where this process's clients sit between one another's (0 ≤ phase < 1), when several
    load generator processes share a ramp."""


@dataclass
class Stats:
    started: int = 0
    completed: int = 0
    completed_in_window: int = 0
    deltas: int = 0
    deltas_in_window: int = 0
    ttfd_ms: list[float] = field(default_factory=list)
    durations_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    cancelled: int = 0
    peak_open: int = 0
    cpu_s: float = 0.0
    """This process's CPU time over the window (loop) or the whole run (hold)."""


class Run:
    """What every exchange of one job shares: the request bytes, the counters, the window."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.stats = Stats()
        self.requests = [_request_bytes(job, body) for body in job.bodies]
        self.classify: Callable[[bytes], int] = (
            classify_direct if job.kind == "direct" else classify_sse
        )
        self.window_start = job.window_start
        self.window_end = job.window_end
        self.active: set[Exchange] = set()
        self.open_now = 0
        self.settled = 0
        """Streams that have had their first delta or have ended (``hold`` mode)."""
        self.all_open_reported = False

    def note_first_delta(self) -> None:
        self.open_now += 1
        self.stats.peak_open = max(self.stats.peak_open, self.open_now)
        self.settled += 1
        self.maybe_report_all_open()

    def maybe_report_all_open(self) -> None:
        if (
            self.job.mode == "hold"
            and not self.all_open_reported
            and self.settled >= self.job.concurrency
        ):
            self.all_open_reported = True
            # Open: connected (or connecting) and not ended, whether or not text came yet.
            emit({"event": "all_open", "open": len(self.active), "at": monotonic()})

    def record(self, exchange: Exchange) -> None:
        stats = self.stats
        outcome = exchange.outcome
        assert outcome is not None, "recorded before it finished"
        if exchange.first_delta_at is not None:
            self.open_now -= 1
        else:
            self.settled += 1
            self.maybe_report_all_open()
        in_window = self.window_start <= exchange.started_at < self.window_end
        if exchange.first_delta_at is not None and (self.job.mode == "hold" or in_window):
            # A stream cut at the end of the window had its first delta all the same.
            stats.ttfd_ms.append((exchange.first_delta_at - exchange.started_at) * 1e3)
        if outcome == "cancelled":
            stats.cancelled += 1
            return
        if outcome in OK_OUTCOMES:
            stats.completed += 1
            if self.window_start <= exchange.ended_at < self.window_end:
                stats.completed_in_window += 1
        else:
            stats.errors[outcome] = stats.errors.get(outcome, 0) + 1
            if len(stats.error_samples) < 5:
                stats.error_samples.append(f"{outcome}: {exchange.detail}")
        if self.job.mode == "hold" and outcome in OK_OUTCOMES:
            stats.durations_s.append(exchange.ended_at - exchange.started_at)


def _request_bytes(job: Job, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"POST {job.path} HTTP/1.1\r\n"
        f"Host: {job.host}:{job.port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        "Authorization: Bearer bench\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


class Exchange(asyncio.Protocol):
    """One request and its streamed answer, on a connection of its own."""

    __slots__ = (
        "body_ended",
        "chunk_left",
        "chunked",
        "crlf_left",
        "deltas",
        "detail",
        "done",
        "ended_at",
        "first_delta_at",
        "head",
        "last_activity",
        "outcome",
        "raw",
        "request",
        "run",
        "separator",
        "sse",
        "started_at",
        "terminal",
        "transport",
    )

    def __init__(self, run: Run, request: bytes, done: asyncio.Future[None]) -> None:
        self.run = run
        self.request = request
        self.done = done
        self.started_at = self.last_activity = monotonic()
        self.ended_at = 0.0
        self.first_delta_at: float | None = None
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.chunked = False
        self.raw = b""
        self.chunk_left = 0
        self.crlf_left = 0
        self.body_ended = False
        self.sse = b""
        self.separator: bytes | None = None
        self.deltas = 0
        self.terminal = OTHER
        self.outcome: str | None = None
        self.detail = ""

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        transport = cast(asyncio.Transport, transport)
        if self.outcome is not None:  # timed out or cut while connecting
            transport.abort()
            return
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.outcome is not None:
            return
        now = self.last_activity = monotonic()
        if self.head is not None:
            head = self.head + data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                self.head = head
                return
            self.head = None
            data = head[end + 4 :]
            status_line, _, headers = head[:end].partition(b"\r\n")
            parts = status_line.split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status != 200:
                self.finish("status", status_line.decode("latin-1"))
                return
            self.chunked = b"transfer-encoding: chunked" in headers.lower()
            if not data:
                return
        if self.chunked:
            self._dechunk(data, now)
        else:
            self._feed(data, now)
        if self.body_ended and self.outcome is None:
            self._end_of_body()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outcome is None:
            if self.head is not None:
                self.finish("missing_done", f"closed before a response ({exc!r})")
            elif self.chunked and not self.body_ended:
                self.finish("missing_done", f"connection lost mid-body ({exc!r})")
            else:
                self._end_of_body()

    # --- parsing ------------------------------------------------------------------------------

    def _dechunk(self, data: bytes, now: float) -> None:
        buffer = self.raw + data if self.raw else data
        position, size = 0, len(buffer)
        pieces: list[bytes] = []
        while position < size:
            if self.chunk_left:
                take = min(self.chunk_left, size - position)
                pieces.append(buffer[position : position + take])
                position += take
                self.chunk_left -= take
                if not self.chunk_left:
                    self.crlf_left = 2
            elif self.crlf_left:
                skip = min(self.crlf_left, size - position)
                position += skip
                self.crlf_left -= skip
            else:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    break
                chunk_size = int(buffer[position:line_end].split(b";", 1)[0], 16)
                position = line_end + 2
                if chunk_size == 0:
                    self.body_ended = True
                    position = size  # trailers, if any, are of no interest
                    break
                self.chunk_left = chunk_size
        self.raw = buffer[position:]
        if pieces:
            self._feed(pieces[0] if len(pieces) == 1 else b"".join(pieces), now)

    def _feed(self, payload: bytes, now: float) -> None:
        separator = self.separator
        if separator is None:
            separator = self.separator = b"\r\n\r\n" if b"\r\n" in payload else b"\n\n"
        events = (self.sse + payload if self.sse else payload).split(separator)
        self.sse = events.pop()
        if not events:
            return
        classify = self.run.classify
        count = 0
        for event in events:
            kind = classify(event)
            if kind == DELTA:
                # A relayed event may carry several deltas, each ending with the mark; the
                # upstream's own events carry one each (the mark is JSON there, escaped or not).
                count += event.count(DELTA_MARK) if classify is classify_sse else 1
            elif kind != OTHER:
                self.terminal = kind
        if count:
            run = self.run
            if self.first_delta_at is None:
                self.first_delta_at = now
                run.note_first_delta()
            self.deltas += count
            stats = run.stats
            stats.deltas += count
            if run.window_start <= now < run.window_end:
                stats.deltas_in_window += count
            limit = run.job.close_after_deltas
            if limit and self.deltas >= limit:
                self.finish("hung_up")
                return
        if self.terminal == FAILED:
            self.finish("error_event", "an error event in the stream")
        elif self.terminal == FALLBACK:
            self.finish("fallback", "the app answered offline (event: notice)")

    def _end_of_body(self) -> None:
        if self.terminal == DONE:
            self.finish("ok")
        else:
            self.finish("missing_done", f"the body ended after {self.deltas} deltas, no done")

    def finish(self, outcome: str, detail: str = "") -> None:
        if self.outcome is not None:
            return
        self.outcome, self.detail, self.ended_at = outcome, detail, monotonic()
        if self.transport is not None:
            if outcome in OK_OUTCOMES:
                self.transport.close()
            else:
                self.transport.abort()
        if not self.done.done():
            self.done.set_result(None)


# --- running a job -------------------------------------------------------------------------------


async def exchange_once(run: Run, number: int) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    exchange = Exchange(run, run.requests[number % len(run.requests)], done)
    run.stats.started += 1
    run.active.add(exchange)
    try:
        async with asyncio.timeout(run.job.idle_timeout):
            await loop.create_connection(lambda: exchange, run.job.host, run.job.port)
    except (OSError, TimeoutError) as error:
        exchange.finish("connect", repr(error))
    await done
    run.active.discard(exchange)
    run.record(exchange)


async def watchdog(run: Run) -> None:
    """Times out silent or overlong streams; cheaper than a timer per stream."""
    job = run.job
    while True:
        await asyncio.sleep(0.25)
        now = monotonic()
        for exchange in list(run.active):
            if now - exchange.last_activity > job.idle_timeout:
                exchange.finish("timeout", f"nothing for {job.idle_timeout:g} s")
            elif now - exchange.started_at > job.total_timeout:
                exchange.finish("timeout", f"not finished in {job.total_timeout:g} s")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - monotonic()))


async def run_loop(run: Run) -> None:
    """``concurrency`` clients, each asking again as soon as its answer has ended."""
    numbers = iter(range(1 << 62))

    job = run.job

    async def client(k: int) -> None:
        await sleep_until(job.start_at + job.ramp * (k + job.ramp_phase) / job.concurrency)
        while monotonic() < run.window_end:
            await exchange_once(run, next(numbers))

    async def window() -> None:
        await sleep_until(run.window_start)
        cpu_at_start = cpu_seconds()
        await sleep_until(run.window_end)
        run.stats.cpu_s = cpu_seconds() - cpu_at_start
        for exchange in list(run.active):
            exchange.finish("cancelled")

    await sleep_until(run.job.start_at)
    await asyncio.gather(window(), *(client(k) for k in range(job.concurrency)))


async def run_hold(run: Run) -> None:
    """``concurrency`` streams opened at once, each read to its end."""
    await sleep_until(run.job.start_at)
    cpu_at_start = cpu_seconds()
    run.maybe_report_all_open()  # at once if this process has no stream to open
    await asyncio.gather(*(exchange_once(run, n) for n in range(run.job.concurrency)))
    run.stats.cpu_s = cpu_seconds() - cpu_at_start


async def run_job(job: Job) -> Stats:
    run = Run(job)
    guard = asyncio.create_task(watchdog(run))
    try:
        body: Coroutine[Any, Any, None] = run_loop(run) if job.mode == "loop" else run_hold(run)
        await body
    finally:
        guard.cancel()
    return run.stats


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def raise_fd_limit() -> None:
    """Thousands of sockets need more descriptors than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (as uvicorn uses for every server here), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main() -> None:
    raise_fd_limit()
    emit({"event": "ready"})
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        for line in sys.stdin:  # one job a line, until the parent closes stdin
            stats = runner.run(run_job(Job(**json.loads(line))))
            emit({"event": "result", **asdict(stats)})


if __name__ == "__main__":
    main()
