"""Relay load: the app's relay against the upstream alone and against a straightforward relay.

``uv run python -m bench.relay`` starts, each as its own process on loopback, the fake
Responses API server (``bench.upstream``), the server under test and a load generator
(``bench.loadgen``), for three targets side by side:

- ``direct``: the load generator asks the upstream itself (``POST /v1/responses``, the body
  shape the app sends): the limit;
- ``baseline``: ``bench.straightforward_relay``, a relay written the obvious way;
- ``app``: ``main.py`` as deployed, storing conversations (SQLite in a temporary folder, or
  ``--database-url``), with only what a load test from one address needs changed (printed);
- ``app-semantic`` and ``app-semantic-new`` (paced workload only): the same app with semantic
  search on, the upstream answering ``/v1/embeddings`` after ``--embeddings-latency``; the
  first asks three questions lexical search does not answer confidently, again and again
  (their vectors are cached after the first time), the second a new question every time
  (each needs an embeddings call, so its target allows the embeddings latency: what a call
  to ``/v1/embeddings`` takes a client, timed beside the ``direct`` paced run, since the fake
  cannot wait exactly the configured delay and a call is also a round trip);
- ``app-agents``: the same app with ``ENGINE=agents`` (the OpenAI Agents SDK against the same
  upstream), in every workload.

Workloads (each target gets a fresh upstream and server per workload and per capacity step,
unless ``--reuse-servers``):

1. ``saturation``: answers of 200 deltas, no pacing; ``--concurrency`` clients ask again as soon
   as an answer ends, for ``--duration`` seconds after ``--warmup``;
2. ``paced``: the same answers of 200 deltas, 20 ms apart as a model streams them (4 s an
   answer), from ``--paced-concurrency`` clients that start one after another over one
   answer's length (a steady state of open streams), measured once all have started;
3. ``capacity``: N paced streams (200 deltas 20 ms apart) opened at once, N stepping up to
   ``--max-streams``; memory is sampled when every stream has received its first delta.

Figures: the time to first delta (from opening the connection to the first text delta
event), requests per second, the server's CPU time (utime + stime of its process, from
``/proc/<pid>/stat``) per 1,000 deltas the clients received, its peak RSS (VmHWM, reset at the
start of each measurement) and errors (connect failures, non-200 answers, streams without
``done``, error events, timeouts, offline fallbacks). The command checks the performance
issue's targets and exits non-zero if one is missed (``--no-fail`` only reports).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import httpx2
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from bench.loadgen import ERROR_OUTCOMES, Job, raise_fd_limit
from bench.processes import Server, started, wait_until_listening
from bench.upstream import SCENARIO_PATH
from domain.policy import INSTRUCTIONS
from settings import Settings
from testing.app_server import PROJECT_ROOT, free_port

Target = Literal["direct", "baseline", "app", "app-semantic", "app-semantic-new", "app-agents"]
TARGETS: tuple[Target, ...] = (
    "direct",
    "baseline",
    "app",
    "app-semantic",
    "app-semantic-new",
    "app-agents",
)
SEMANTIC_TARGETS: frozenset[Target] = frozenset({"app-semantic", "app-semantic-new"})
WORKLOADS = ("saturation", "paced", "capacity")
QUESTIONS = ("어떤 프로젝트를 했나요?", "When can she start?", "Kubernetes 경험이 있나요?")
# Questions lexical search does not answer confidently (each needs semantic search); from the
# evaluation set.
SEMANTIC_QUESTIONS = (
    "Has she ever managed people?",
    "가장 자랑할 만한 업적은 무엇인가요?",
    "How did she speed up shipping code to production?",
)
NEW_QUESTIONS_PER_JOB = 5000


@dataclass(frozen=True)
class Questions:
    """What the recruiters of the benchmark ask: ``plain`` in every workload, ``semantic`` by
    the semantic-search targets (questions lexical search does not answer confidently in the
    applicant's documents, so that each needs its query vector)."""

    plain: tuple[str, ...] = QUESTIONS
    semantic: tuple[str, ...] = SEMANTIC_QUESTIONS


# Left out of an evaluation set's questions: a follow-up needs the question before it, and a
# protected question is declined before any search or model call.
NOT_BENCHMARKED_KINDS = frozenset({"follow_up", "protected"})


def read_questions(path: Path) -> tuple[str, ...]:
    """One question a line (UTF-8); blank lines and lines starting with ``#`` are skipped.

    An evaluation set (``questions.yaml``, docs/evaluation.md) gives its held-out half, the
    one retrieval was not tuned on, less the kinds in ``NOT_BENCHMARKED_KINDS``."""
    if path.suffix in (".yaml", ".yml"):
        # Imported here: it loads the search, which the load generators never need.
        from evaluation.evaluate import load_questions, split_of

        questions = tuple(
            question.question
            for question in load_questions(path)
            if split_of(question) == "held-out" and question.kind not in NOT_BENCHMARKED_KINDS
        )
        if not questions:
            raise ValueError(f"{path}: no held-out questions to ask")
        return questions
    lines = path.read_text(encoding="utf-8").splitlines()
    questions = tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    if not questions:
        raise ValueError(f"{path}: no questions (one a line)")
    return questions


MODEL = "gpt-4.1-mini"
SSE_PATH = "/openai-response/sse"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RESULT_LINE_LIMIT = 64 * 1024 * 1024

# The targets of the performance issues (8, then 18).
CPU_RATIO_TARGET = 0.3
RPS_RATIO_TARGET = 3.0
ADDED_TTFD_TARGET_MS = 5.0
"""Paced: added time to first delta, with semantic search off or a repeated question."""
ADDED_TTFD_NEW_QUESTION_MS = 5.0
"""Paced, a new question with semantic search on: over the embeddings latency."""
CAPACITY_STREAMS_TARGET = 1000
RSS_PER_STREAM_TARGET_KB = 100.0
DEFAULT_EMBEDDINGS_LATENCY = 0.15


# --- the servers -----------------------------------------------------------------------------


def set_scenario(
    upstream: Server, deltas: int, delay: float, embeddings_latency: float = 0.0
) -> None:
    response = httpx2.post(
        upstream.origin + SCENARIO_PATH,
        json={"deltas": deltas, "delay": delay, "embeddings_latency": embeddings_latency},
        timeout=10,
    )
    response.raise_for_status()


def app_environment(upstream: str, database_url: str) -> dict[str, str]:
    """The app's settings for the load test: the upstream, storage, and what one address needs."""
    return {
        "ENGINE": "responses",
        "OPENAI_BASE_URL": upstream,
        "DATABASE_URL": database_url,
        # Thousands of questions a minute from 127.0.0.1 are the point here.
        "RATE_LIMIT_PER_MINUTE": "0",
        # The fake serves no embeddings: a failing call per question would be noise.
        "SEMANTIC_SEARCH": "false",
        # A watcher thread polling the profile folder is not part of relaying.
        "KNOWLEDGE_WATCH": "false",
        "LOG_LEVEL": "warning",
        # RESUME_WINDOW_SECONDS from the environment, to compare resumable answers (the
        # default) with the direct path (0).
        **{k: v for k, v in os.environ.items() if k == "RESUME_WINDOW_SECONDS"},
        # Several workers (and the Redis they need) from the environment, to compare a
        # process per core with the default one process; another applicant's documents
        # (KNOWLEDGE_DIR) than the bundled sample.
        **{
            k: v
            for k, v in os.environ.items()
            if k in ("WEB_CONCURRENCY", "REDIS_URL", "KNOWLEDGE_DIR")
        },
        # As the image runs it (Dockerfile): fewer malloc arenas, less RSS per open stream.
        "MALLOC_ARENA_MAX": "2",
    }


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == ():
        return "unset"
    return str(value)


def setting_changes(environment: Mapping[str, str]) -> list[str]:
    """``NAME=value (default …)`` for every setting in ``environment`` that is not a default."""
    changes = []
    for name, value in environment.items():
        setting = Settings.model_fields.get(name.lower())
        if setting is None:
            continue
        default = _shown(setting.get_default(call_default_factory=True))
        if value.lower() != default.lower():
            changes.append(f"{name}={value} (default {default})")
    return changes


class Servers:
    """Upstream and target processes, fresh for each measurement or started once and reused."""

    def __init__(self, stack: ExitStack, folder: Path, database_url: str | None, reuse: bool):
        self.stack = stack
        self.folder = folder
        self.database_url = database_url
        self.reuse = reuse
        self.started_apps = 0
        self._shared: dict[Target, tuple[Server, Server]] = {}

    def start_all(self, targets: Sequence[Target]) -> None:
        """With ``--reuse-servers``: one upstream, one server per target, started in parallel."""
        upstream = self._start_upstream(self.stack)
        servers = {target: self._start_target(self.stack, target, upstream) for target in targets}
        wait_until_listening(upstream, "/health")
        for target, server in servers.items():
            self._wait(target, server)
            self._shared[target] = (upstream, server)

    @contextmanager
    def cell(self, target: Target) -> Iterator[tuple[Server, Server]]:
        """The upstream and the measured server (the upstream itself for ``direct``)."""
        if self.reuse:
            yield self._shared[target]
            return
        with ExitStack() as stack:
            upstream = self._start_upstream(stack)
            server = self._start_target(stack, target, upstream)
            wait_until_listening(upstream, "/health")
            self._wait(target, server)
            yield upstream, server

    def app_environment(self, upstream: str, number: int | str | None = None) -> dict[str, str]:
        """A new SQLite file for each app started (as each deployment has its own)."""
        number = self.started_apps if number is None else number
        database = self.database_url or (f"sqlite+aiosqlite:///{self.folder / f'app-{number}.db'}")
        return app_environment(upstream, database)

    def _start_upstream(self, stack: ExitStack) -> Server:
        port = free_port()
        argv = ["-m", "bench.upstream", "--port", str(port)]
        return stack.enter_context(started("upstream", argv, port, {}))

    def _start_target(self, stack: ExitStack, target: Target, upstream: Server) -> Server:
        if target == "direct":
            return upstream
        port = free_port()
        if target == "baseline":
            argv = ["-m", "bench.straightforward_relay", "--port", str(port)]
            argv += ["--upstream", f"{upstream.origin}/v1"]
            return stack.enter_context(started("baseline", argv, port, {}))
        self.started_apps += 1
        env = {"HOST": "127.0.0.1", "PORT": str(port)}
        env |= self.app_environment(f"{upstream.origin}/v1")
        if target == "app-agents":
            env["ENGINE"] = "agents"
        if target in SEMANTIC_TARGETS:
            env["SEMANTIC_SEARCH"] = "true"
            env["EMBEDDINGS_CACHE"] = str(self.folder / f"embeddings-{self.started_apps}.sqlite3")
        return stack.enter_context(started(target, ["main.py"], port, env))

    @staticmethod
    def _wait(target: Target, server: Server) -> None:
        if target.startswith("app"):
            wait_until_listening(server, "/ready")
        elif target == "baseline":
            wait_until_listening(server, SSE_PATH)


# --- the server's process, from /proc ----------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: a server with WEB_CONCURRENCY > 1 is a parent and its
    workers, and the benchmark counts them all."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return found


def _process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its live descendants (every thread)."""
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):  # a child that has just ended
            total += _process_cpu_seconds(process)
    return total


def _process_memory_kb(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} for process {pid}")


def memory_kb(pid: int, name: Literal["VmRSS", "VmHWM"]) -> int:
    """The process's RSS (or its peak), added up over it and its descendants (for peaks:
    each process's own, so an upper bound of the tree's)."""
    total = _process_memory_kb(pid, name)
    for process in process_tree(pid)[1:]:
        with contextlib.suppress(OSError, RuntimeError):
            total += _process_memory_kb(process, name)
    return total


def reset_peak_memory(pid: int) -> None:
    """VmHWM starts again from the current RSS (Linux 4.0+), so peaks are per measurement."""
    for process in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{process}/clear_refs", "w") as clear:
            clear.write("5")


# --- the load generator ------------------------------------------------------------------------


class LoadProcesses:
    """``count`` load generator processes running one job, split between them."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes

    @classmethod
    async def start(cls, count: int) -> LoadProcesses:
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.loadgen",
                cwd=PROJECT_ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                # A result line carries every TTFD sample: thousands at saturation.
                limit=RESULT_LINE_LIMIT,
            )
            for _ in range(count)
        ]
        load = cls(processes)
        await load.expect("ready", 60)
        return load

    async def send(self, jobs: Sequence[Job]) -> None:
        for process, job in zip(self.processes, jobs, strict=True):
            assert process.stdin is not None
            process.stdin.write(json.dumps(asdict(job)).encode() + b"\n")
            await process.stdin.drain()

    async def expect(self, event: str, seconds: float) -> list[dict[str, Any]]:
        async def one(process: asyncio.subprocess.Process) -> dict[str, Any]:
            assert process.stdout is not None
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise RuntimeError(f"a load generator exited ({await process.wait()})")
                message: dict[str, Any] = json.loads(line)
                # Waiting for the result, the news that all streams are open is old news.
                if not (event == "result" and message.get("event") == "all_open"):
                    break
            if message.get("event") != event:
                raise RuntimeError(f"expected {event} from a load generator, got {message}")
            return message

        async with asyncio.timeout(seconds):
            return list(await asyncio.gather(*(one(p) for p in self.processes)))

    async def close(self) -> None:
        """Closing stdin ends them; a stuck one is killed after 5 s."""
        for process in self.processes:
            if process.stdin is not None:
                process.stdin.close()
        for process in self.processes:
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def split(total: int, parts: int) -> list[int]:
    """``total`` clients spread over ``parts`` processes as evenly as they go."""
    return [total // parts + (1 if n < total % parts else 0) for n in range(parts)]


def request_bodies(target: Target, questions: Questions = Questions()) -> list[str]:
    """What each target is asked: a question, or for ``direct`` a body like the app's (the
    same fields; one retrieved document, about the 2.3-2.8 KB the app sends).

    ``app-semantic-new`` gets questions no earlier job asked: a semantic question with a
    word of its own (random per job), which no cache has seen."""
    if target == "app-semantic-new":
        salt = os.urandom(3).hex()
        semantic = questions.semantic
        return [
            json.dumps({"input": f"{semantic[n % len(semantic)]} (q{salt}{n})"}, ensure_ascii=False)
            for n in range(NEW_QUESTIONS_PER_JOB)
        ]
    if target != "direct":
        asked = questions.semantic if target == "app-semantic" else questions.plain
        return [json.dumps({"input": question}, ensure_ascii=False) for question in asked]
    profile = (PROJECT_ROOT / "sample_profile" / "en" / "resume.md").read_text(encoding="utf-8")
    grounding = (
        "Documents retrieved from the applicant's profile for the recruiter's last message.\n"
        f'<profile_documents>\n<document id="1" source="en/resume.md" heading="Resume">\n'
        f"{profile[:1000]}\n</document>\n</profile_documents>\n<contact>\n(none)\n</contact>"
    )
    return [
        json.dumps(
            {
                "model": MODEL,
                "instructions": INSTRUCTIONS,
                "input": [
                    {"role": "developer", "content": grounding},
                    {"role": "user", "content": question},
                ],
                "max_output_tokens": 800,
                "store": False,
                "stream": True,
            },
            ensure_ascii=False,
        )
        for question in questions.plain
    ]


def job_for(
    target: Target,
    server: Server,
    *,
    mode: Literal["loop", "hold"],
    concurrency: int,
    start_at: float,
    window: tuple[float, float] = (0.0, float("inf")),
    idle_timeout: float,
    total_timeout: float = 120.0,
    close_after_deltas: int = 0,
    ramp: float = 0.0,
    ramp_phase: float = 0.0,
    questions: Questions = Questions(),
) -> Job:
    return Job(
        host="127.0.0.1",
        port=server.port,
        path="/v1/responses" if target == "direct" else SSE_PATH,
        bodies=request_bodies(target, questions),
        kind="direct" if target == "direct" else "sse",
        mode=mode,
        concurrency=concurrency,
        start_at=start_at,
        window_start=window[0],
        window_end=window[1],
        idle_timeout=idle_timeout,
        total_timeout=total_timeout,
        close_after_deltas=close_after_deltas,
        ramp=ramp,
        ramp_phase=ramp_phase,
    )


def merge(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One load generator's result from several: counts added, samples joined."""
    merged: dict[str, Any] = {"errors": {}, "error_samples": []}
    for result in results:
        for key, value in result.items():
            if key == "event":
                continue
            if key == "errors":
                for outcome, count in value.items():
                    merged["errors"][outcome] = merged["errors"].get(outcome, 0) + count
            elif isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
    return merged


# --- measurements ------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Measurement:
    """One target under one workload (for ``capacity``, one step)."""

    target: Target
    workload: str
    concurrency: int
    deltas_per_answer: int
    delay: float
    load: dict[str, Any]
    window_s: float
    server_cpu_s: float
    upstream_cpu_s: float | None
    """None for ``direct``: the upstream is the server."""
    peak_rss_kb: int
    idle_rss_kb: int | None = None
    open_rss_kb: int | None = None
    open_streams: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(self.load["errors"].get(outcome, 0) for outcome in ERROR_OUTCOMES)

    def ttfd(self, fraction: float) -> float:
        return percentile(self.load.get("ttfd_ms", []), fraction)

    @property
    def deltas(self) -> int:
        """Deltas the clients received in the window (in a capacity step: all of them)."""
        return int(self.load["deltas_in_window"])

    @property
    def rps(self) -> float:
        return self.load["completed_in_window"] / self.window_s if self.window_s else 0.0

    @property
    def cpu_ms_per_1k(self) -> float:
        return self.server_cpu_s * 1e6 / self.deltas if self.deltas else float("nan")

    @property
    def upstream_ms_per_1k(self) -> float | None:
        if self.upstream_cpu_s is None or not self.deltas:
            return None
        return self.upstream_cpu_s * 1e6 / self.deltas

    @property
    def rss_per_stream_kb(self) -> float:
        """RSS growth over the streams open when sampled (all of them, unless some ended
        before the last one had its first delta: then the table says fewer were open)."""
        if self.open_rss_kb is None or self.idle_rss_kb is None or not self.open_streams:
            return float("nan")
        return (self.open_rss_kb - self.idle_rss_kb) / self.open_streams

    def share(self, cpu_s: float | None) -> str:
        """CPU time over the window as a share of one core."""
        return "—" if cpu_s is None or not self.window_s else f"{cpu_s / self.window_s:.0%}"

    def summary(self) -> dict[str, Any]:
        return {
            "ttfd_p50_ms": self.ttfd(0.5),
            "ttfd_p99_ms": self.ttfd(0.99),
            "rps": self.rps,
            "deltas": self.deltas,
            "cpu_ms_per_1k_deltas": self.cpu_ms_per_1k,
            "upstream_cpu_ms_per_1k_deltas": self.upstream_ms_per_1k,
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "errors": self.errors,
            "rss_per_stream_kb": self.rss_per_stream_kb,
        }


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    workloads: tuple[str, ...]
    duration: float
    warmup: float
    concurrency: int
    saturation_deltas: int
    paced_concurrency: int
    paced_deltas: int
    delay: float
    steps: tuple[int, ...]
    idle_timeout: float
    hold_deltas: int
    load_processes: int
    embeddings_latency: float = DEFAULT_EMBEDDINGS_LATENCY
    questions: Questions = Questions()


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def embeddings_round_trips(
    upstream: Server, until: float, questions: Sequence[str] = SEMANTIC_QUESTIONS
) -> list[float]:
    """Milliseconds each ``/v1/embeddings`` call takes a client, one after another until
    ``until`` (a new text each time, base64 as the app asks, a kept-alive connection).

    The endpoint's latency as the app meets it: the configured delay, the timer's rounding
    (uvloop counts in whole milliseconds) and the HTTP round trip. The first call, which
    opens the connection, is left out.
    """
    samples: list[float] = []
    async with httpx2.AsyncClient(base_url=upstream.origin, timeout=10) as client:
        number = 0
        while time.monotonic() < until:
            body = {
                "model": "text-embedding-3-small",
                "input": [f"{questions[number % len(questions)]} ({number})"],
                "encoding_format": "base64",
            }
            started = time.perf_counter()
            response = await client.post("/v1/embeddings", json=body)
            response.raise_for_status()
            if number:
                samples.append((time.perf_counter() - started) * 1e3)
            number += 1
    return samples


async def measure_loop(
    plan: Plan, load: LoadProcesses, target: Target, upstream: Server, server: Server, workload: str
) -> Measurement:
    """Clients asking again and again; CPU taken over the window after the warm-up."""
    saturation = workload == "saturation"
    deltas = plan.saturation_deltas if saturation else plan.paced_deltas
    delay = 0.0 if saturation else plan.delay
    concurrency = plan.concurrency if saturation else plan.paced_concurrency
    set_scenario(upstream, deltas, delay, plan.embeddings_latency)
    await warm_up(plan, load, target, server, concurrency)
    # Paced answers outlast the warm-up: the clients start one after another over one
    # answer's length, so the window sees `concurrency` streams open in a steady state, not
    # rounds of answers that all begin together (bursts of starts are the capacity workload's).
    ramp = deltas * delay
    start_at = time.monotonic() + 0.1
    window_start = start_at + ramp + plan.warmup
    window = (window_start, window_start + plan.duration)
    shares = split(concurrency, len(load.processes))
    jobs = [
        job_for(
            target,
            server,
            mode="loop",
            concurrency=n,
            start_at=start_at,
            window=window,
            idle_timeout=plan.idle_timeout,
            ramp=ramp,
            ramp_phase=i / len(shares),
            questions=plan.questions,
        )
        for i, n in enumerate(shares)
    ]
    reset_peak_memory(server.pid)
    await load.send(jobs)
    await sleep_until(window[0])
    server_cpu, upstream_cpu = cpu_seconds(server.pid), cpu_seconds(upstream.pid)
    began = time.monotonic()
    # What "the embeddings latency" of the semantic targets is: measured beside the direct
    # paced run, on an upstream as loaded as theirs.
    round_trips = (
        asyncio.create_task(embeddings_round_trips(upstream, window[1], plan.questions.semantic))
        if target == "direct" and not saturation and SEMANTIC_TARGETS & set(plan.targets)
        else None
    )
    await sleep_until(window[1])
    server_cpu = cpu_seconds(server.pid) - server_cpu
    upstream_cpu = cpu_seconds(upstream.pid) - upstream_cpu
    elapsed = time.monotonic() - began
    extra = {"embeddings_ms": await round_trips} if round_trips is not None else {}
    results = await load.expect("result", 60)
    peak = memory_kb(server.pid, "VmHWM")
    return Measurement(
        target=target,
        workload=workload,
        concurrency=concurrency,
        deltas_per_answer=deltas,
        delay=delay,
        load=merge(results),
        window_s=elapsed,
        server_cpu_s=server_cpu,
        upstream_cpu_s=None if server is upstream else upstream_cpu,
        peak_rss_kb=peak,
        extra=extra,
    )


async def hold(
    plan: Plan,
    load: LoadProcesses,
    target: Target,
    server: Server,
    streams: int,
    close_after_deltas: int = 0,
) -> None:
    """Has the load generators open ``streams`` streams at once."""
    nominal = plan.hold_deltas * plan.delay
    start_at = time.monotonic() + 0.1
    jobs = [
        job_for(
            target,
            server,
            mode="hold",
            concurrency=n,
            start_at=start_at,
            idle_timeout=plan.idle_timeout,
            total_timeout=max(60.0, 10 * nominal),
            close_after_deltas=close_after_deltas,
            questions=plan.questions,
        )
        for n in split(streams, len(load.processes))
    ]
    await load.send(jobs)


async def warm_up(
    plan: Plan, load: LoadProcesses, target: Target, server: Server, streams: int
) -> dict[str, int]:
    """A few streams, hung up after a few deltas: the first requests import modules and fill
    pools and caches, which is not what is measured. Returns their errors (for the record)."""
    await hold(plan, load, target, server, min(8, streams), close_after_deltas=3)
    errors: dict[str, int] = merge(await load.expect("result", 120))["errors"]
    return errors


async def measure_capacity(
    plan: Plan, load: LoadProcesses, target: Target, upstream: Server, server: Server, streams: int
) -> Measurement:
    """``streams`` paced answers at once; RSS when all are open, minus RSS at rest before."""
    set_scenario(upstream, plan.hold_deltas, plan.delay)
    warm_up_errors = await warm_up(plan, load, target, server, streams)
    await asyncio.sleep(0.5)  # the warm-up streams wind down
    idle_rss, upstream_idle = memory_kb(server.pid, "VmRSS"), memory_kb(upstream.pid, "VmRSS")
    reset_peak_memory(server.pid)
    server_cpu, upstream_cpu = cpu_seconds(server.pid), cpu_seconds(upstream.pid)
    began = time.monotonic()
    await hold(plan, load, target, server, streams)
    opened = await load.expect("all_open", 300)
    open_rss, upstream_open = memory_kb(server.pid, "VmRSS"), memory_kb(upstream.pid, "VmRSS")
    open_after = time.monotonic() - began
    results = await load.expect("result", 600)
    elapsed = time.monotonic() - began
    server_cpu = cpu_seconds(server.pid) - server_cpu
    upstream_cpu = cpu_seconds(upstream.pid) - upstream_cpu
    peak = memory_kb(server.pid, "VmHWM")
    return Measurement(
        target=target,
        workload="capacity",
        concurrency=streams,
        deltas_per_answer=plan.hold_deltas,
        delay=plan.delay,
        load=merge(results),
        window_s=elapsed,
        server_cpu_s=server_cpu,
        upstream_cpu_s=None if server is upstream else upstream_cpu,
        peak_rss_kb=peak,
        idle_rss_kb=idle_rss,
        open_rss_kb=open_rss,
        open_streams=sum(message["open"] for message in opened),
        extra={
            "all_open_after_s": open_after,
            "warm_up_errors": warm_up_errors,
            "upstream_idle_rss_kb": upstream_idle,
            "upstream_open_rss_kb": upstream_open,
        },
    )


async def run_plan(plan: Plan, servers: Servers) -> list[Measurement]:
    """Workload by workload, the targets in turn, so drift on the machine hits them alike."""
    measurements: list[Measurement] = []
    load = await LoadProcesses.start(plan.load_processes)
    try:
        for workload in plan.workloads:
            steps = plan.steps if workload == "capacity" else (0,)
            for streams in steps:
                for target in plan.targets:
                    if target in SEMANTIC_TARGETS and workload != "paced":
                        continue  # what semantic search changes is the time to first delta
                    with servers.cell(target) as (upstream, server):
                        if workload == "capacity":
                            measurement = await measure_capacity(
                                plan, load, target, upstream, server, streams
                            )
                        else:
                            measurement = await measure_loop(
                                plan, load, target, upstream, server, workload
                            )
                        for process in {upstream.name: upstream, server.name: server}.values():
                            if process.process.poll() is not None:
                                raise RuntimeError(
                                    f"{process.name} exited during {workload}:\n"
                                    + process.log_tail()
                                )
                    measurements.append(measurement)
                    print(progress_line(measurement), flush=True)
                    if servers.reuse:
                        await asyncio.sleep(0.2)  # let aborted streams wind down
    finally:
        await load.close()
    return measurements


# --- reporting ---------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"  # NaN: no samples


def progress_line(m: Measurement) -> str:
    size = f"{m.concurrency} streams" if m.workload == "capacity" else f"{m.concurrency} clients"
    return (
        f"  {m.workload:<10} {size:>12} {m.target:<16} ttfd p50 {_ms(m.ttfd(0.5))} ms, "
        f"{m.deltas} deltas, {m.errors} errors"
    )


def loop_table(measurements: Sequence[Measurement], workload: str) -> list[str]:
    rows = [m for m in measurements if m.workload == workload]
    if not rows:
        return []
    first = rows[0]
    pacing = f"{first.delay * 1e3:g} ms apart" if first.delay else "no pacing"
    direct = next((m for m in rows if m.target == "direct"), None)
    lines = [
        f"{workload}: {first.concurrency} clients, answers of {first.deltas_per_answer} deltas "
        f"({pacing}), {first.window_s:.1f} s measured",
        "",
        "| target | ttfd p50 | ttfd p99 | +ttfd p50 vs direct | rps | cpu ms / 1k deltas "
        "| peak RSS MB | errors | server CPU | upstream CPU | upstream ms / 1k deltas | "
        "load CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        added = (
            f"{m.ttfd(0.5) - direct.ttfd(0.5):+.1f} ms"
            if direct is not None and m is not direct
            else ""
        )
        upstream_per_1k = m.upstream_ms_per_1k
        lines.append(
            f"| {m.target} | {_ms(m.ttfd(0.5))} ms | {_ms(m.ttfd(0.99))} ms | {added} "
            f"| {m.rps:.0f} | {_ms(m.cpu_ms_per_1k)} | {m.peak_rss_kb / 1024:.0f} "
            f"| {m.errors} | {m.share(m.server_cpu_s)} | {m.share(m.upstream_cpu_s)} "
            f"| {'—' if upstream_per_1k is None else _ms(upstream_per_1k)} "
            f"| {m.share(m.load.get('cpu_s'))} |"
        )
    return lines


def per_stream(m: Measurement) -> str:
    return f"{m.rss_per_stream_kb:.0f}" if m.open_streams == m.concurrency else "—"


def capacity_table(measurements: Sequence[Measurement]) -> list[str]:
    rows = [m for m in measurements if m.workload == "capacity"]
    if not rows:
        return []
    first = rows[0]
    nominal = first.deltas_per_answer * first.delay
    lines = [
        f"capacity: N streams opened at once, answers of {first.deltas_per_answer} deltas "
        f"{first.delay * 1e3:g} ms apart ({nominal:.1f} s as paced)",
        "",
        "| target | streams | errors | open at once | all open after | RSS at rest MB "
        "| RSS all open MB | RSS per stream KB | ttfd p50 | ttfd p99 | answer p50 | answer p99 "
        "| cpu ms / 1k deltas | server CPU | load CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        durations = m.load.get("durations_s", [])
        lines.append(
            f"| {m.target} | {m.concurrency} | {m.errors} | {m.open_streams} "
            f"| {m.extra['all_open_after_s']:.1f} s | {(m.idle_rss_kb or 0) / 1024:.0f} "
            f"| {(m.open_rss_kb or 0) / 1024:.0f} | {per_stream(m)} "
            f"| {_ms(m.ttfd(0.5))} ms | {_ms(m.ttfd(0.99))} ms "
            f"| {percentile(durations, 0.5):.1f} s | {percentile(durations, 0.99):.1f} s "
            f"| {_ms(m.cpu_ms_per_1k)} | {m.share(m.server_cpu_s)} "
            f"| {m.share(m.load.get('cpu_s'))} |"
        )
    largest = []
    for target in dict.fromkeys(m.target for m in rows):
        clean = [m.concurrency for m in rows if m.target == target and m.errors == 0]
        largest.append(f"{target} {max(clean) if clean else 'none'}")
    lines.append(f"\nlargest N with zero errors: {', '.join(largest)}")
    if any(m.open_streams != m.concurrency for m in rows):
        lines.append(
            "RSS per stream —: the streams were never all open at once (the first ended before "
            "the last had its first delta), so RSS was never taken with N open."
        )
    return lines


@dataclass(frozen=True)
class Verdict:
    name: str
    figure: str
    passed: bool | None
    """None: not measured in this run."""

    def line(self) -> str:
        outcome = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        return f"{outcome:<5} {self.name}: {self.figure}"


def find(
    measurements: Sequence[Measurement], target: Target, workload: str, streams: int | None = None
) -> Measurement | None:
    return next(
        (
            m
            for m in measurements
            if m.target == target
            and m.workload == workload
            and (streams is None or m.concurrency == streams)
        ),
        None,
    )


SATURATED_SHARE = 0.9
"""A server this busy (CPU time over the window, as a share of one core) in a paced run had
work queued on its event loop: its added time to first delta is mostly that queue."""


def server_processes(target: Target) -> int:
    """The processes that serve ``target``'s requests: the app's WEB_CONCURRENCY workers."""
    if not target.startswith("app"):
        return 1
    return max(1, int(os.environ.get("WEB_CONCURRENCY") or 1))


def saturation_note(m: Measurement) -> str:
    """Says so when a paced figure comes from a server that could not keep up with the load."""
    share = m.server_cpu_s / m.window_s if m.window_s else 0.0
    processes = server_processes(m.target)
    if share < SATURATED_SHARE * processes:
        return ""
    who = f"{processes} {m.target} workers were" if processes > 1 else f"the {m.target} process was"
    return f" ({who} {share:.0%} of a core busy: this load saturates it on this machine)"


def verdicts(measurements: Sequence[Measurement], plan: Plan) -> list[Verdict]:
    """The performance issue's targets, for the workloads as this run defined them."""
    pacing = f"{plan.delay * 1e3:g} ms apart"
    results: list[Verdict] = []
    app, baseline = (
        find(measurements, "app", "saturation"),
        find(measurements, "baseline", "saturation"),
    )
    if app and baseline and baseline.cpu_ms_per_1k > 0:
        ratio = app.cpu_ms_per_1k / baseline.cpu_ms_per_1k
        paced_app, paced_baseline = (
            find(measurements, "app", "paced"),
            find(measurements, "baseline", "paced"),
        )
        paced = (
            f"; paced: {paced_app.cpu_ms_per_1k / paced_baseline.cpu_ms_per_1k:.2f}×"
            if paced_app and paced_baseline and paced_baseline.cpu_ms_per_1k > 0
            else ""
        )
        results.append(
            Verdict(
                f"app CPU per delta ≤ {CPU_RATIO_TARGET}× the baseline's (saturation)",
                f"{app.cpu_ms_per_1k:.1f} vs {baseline.cpu_ms_per_1k:.1f} ms per 1k deltas "
                f"= {ratio:.2f}×{paced}",
                ratio <= CPU_RATIO_TARGET,
            )
        )
        rps_ratio = app.rps / baseline.rps if baseline.rps else float("inf")
        results.append(
            Verdict(
                f"app RPS at saturation ≥ {RPS_RATIO_TARGET:g}× the baseline's",
                f"{app.rps:.0f} vs {baseline.rps:.0f} rps = {rps_ratio:.2f}×",
                rps_ratio >= RPS_RATIO_TARGET,
            )
        )
    else:
        results.append(Verdict("app vs baseline at saturation", "not measured", None))
    app, direct = find(measurements, "app", "paced"), find(measurements, "direct", "paced")
    name = (
        f"app added TTFD p50 over direct ≤ {ADDED_TTFD_TARGET_MS:g} ms "
        f"(paced {pacing}, {plan.paced_concurrency} streams)"
    )
    if app and direct:
        added = app.ttfd(0.5) - direct.ttfd(0.5)
        results.append(
            Verdict(
                name,
                f"{app.ttfd(0.5):.1f} − {direct.ttfd(0.5):.1f} = {added:+.1f} ms"
                + saturation_note(app),
                added <= ADDED_TTFD_TARGET_MS,
            )
        )
    else:
        results.append(Verdict(name, "not measured", None))
    configured_ms = plan.embeddings_latency * 1e3
    round_trips = direct.extra.get("embeddings_ms") if direct else None
    # The endpoint's latency as a client meets it (p50 of the calls timed beside the direct
    # run) when measured; the configured delay otherwise.
    latency_ms = percentile(round_trips, 0.5) if round_trips else configured_ms
    endpoint = f"{configured_ms:g} ms embeddings" + (
        f", {latency_ms:.1f} ms a call" if round_trips else ""
    )
    for target, allowed, what in (
        ("app-semantic", ADDED_TTFD_TARGET_MS, "repeated questions"),
        ("app-semantic-new", latency_ms + ADDED_TTFD_NEW_QUESTION_MS, "new questions"),
    ):
        semantic = find(measurements, target, "paced")
        name = (
            f"semantic search on ({endpoint}), {what}: added TTFD p50 "
            f"over direct ≤ {allowed:.1f} ms"
        )
        if semantic and direct:
            added = semantic.ttfd(0.5) - direct.ttfd(0.5)
            figure = f"{semantic.ttfd(0.5):.1f} − {direct.ttfd(0.5):.1f} = {added:+.1f} ms"
            figure += saturation_note(semantic)
            results.append(Verdict(name, figure, added <= allowed))
        else:
            results.append(Verdict(name, "not measured", None))
    steps = sorted({m.concurrency for m in measurements if m.workload == "capacity"})
    pairs = [
        (n, find(measurements, "app", "capacity", n), find(measurements, "baseline", "capacity", n))
        for n in steps
    ]
    compared = [(n, app, base) for n, app, base in pairs if app and base]
    name = "bursts: app TTFD p50 ≤ the baseline's at every capacity step"
    if compared:
        figure = ", ".join(
            f"{n}: {app.ttfd(0.5):.0f} vs {base.ttfd(0.5):.0f} ms" for n, app, base in compared
        )
        passed = all(app.ttfd(0.5) <= base.ttfd(0.5) for _, app, base in compared)
        results.append(Verdict(name, figure, passed))
    else:
        results.append(Verdict(name, "not measured", None))
    name = (
        f"app holds {CAPACITY_STREAMS_TARGET:,} streams paced {pacing} open at once, "
        f"with zero errors and < {RSS_PER_STREAM_TARGET_KB:g} KB per stream"
    )
    capacity = find(measurements, "app", "capacity", CAPACITY_STREAMS_TARGET)
    if capacity:
        results.append(
            Verdict(
                name,
                f"{capacity.errors} errors, {capacity.open_streams} open at once, "
                f"{per_stream(capacity)} KB per stream",
                capacity.errors == 0
                and capacity.open_streams == capacity.concurrency
                and capacity.rss_per_stream_kb < RSS_PER_STREAM_TARGET_KB,
            )
        )
    else:
        largest = max(
            (m.concurrency for m in measurements if m.target == "app" and m.workload == "capacity"),
            default=0,
        )
        figure = f"not measured (largest step {largest})" if largest else "not measured"
        results.append(Verdict(name, figure, None))
    agents = [m for m in measurements if m.target == "app-agents"]
    name = "ENGINE=agents load-tested, with zero errors (CPU per delta; largest burst)"
    if agents:
        figure = ", ".join(
            f"{m.workload}{f' {m.concurrency}' if m.workload == 'capacity' else ''}: "
            f"{m.errors} errors, {m.cpu_ms_per_1k:.1f} ms per 1k deltas"
            for m in agents
        )
        results.append(Verdict(name, figure, all(m.errors == 0 for m in agents)))
    else:
        results.append(Verdict(name, "not measured", None))
    return results


def report(measurements: Sequence[Measurement], plan: Plan) -> list[Verdict]:
    print()
    for lines in (
        loop_table(measurements, "saturation"),
        loop_table(measurements, "paced"),
        capacity_table(measurements),
    ):
        if lines:
            print("\n".join(lines), end="\n\n")
    samples = {
        m.target: "; ".join(m.load["error_samples"][:2])
        for m in measurements
        if m.load["error_samples"]
    }
    for target, sample in samples.items():
        print(f"errors ({target}), e.g.: {sample}")
    busy = [m for m in measurements if m.window_s and (m.load.get("cpu_s") or 0) / m.window_s > 0.9]
    if busy:
        print(
            "note: the load generator used over 90% of a core in "
            + ", ".join(sorted({f"{m.workload}/{m.target}" for m in busy}))
            + "; it may have been the bottleneck there (try --load-processes 2)"
        )
    results = verdicts(measurements, plan)
    print("targets:")
    for verdict in results:
        print("  " + verdict.line())
    return results


# --- command line ------------------------------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--duration", type=float, help="measured seconds (10; quick 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (2; quick 0.5)")
    parser.add_argument("--concurrency", type=int, help="saturation clients (32; quick 4)")
    parser.add_argument("--paced-concurrency", type=int, help="paced clients (100; quick 8)")
    parser.add_argument("--max-streams", type=int, help="largest capacity step (1000; quick 20)")
    parser.add_argument("--hold-deltas", type=int, help="deltas per capacity answer (200)")
    parser.add_argument(
        "--delay", type=float, default=0.02, help="seconds between paced deltas (0.02)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="a stream silent this long is an error (30 s)",
    )
    parser.add_argument("--load-processes", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--embeddings-latency",
        type=float,
        default=DEFAULT_EMBEDDINGS_LATENCY,
        help="seconds the upstream takes per embeddings request (0.15)",
    )
    parser.add_argument("--database-url", help="the app's DATABASE_URL (default: SQLite, temp)")
    parser.add_argument(
        "--questions",
        type=Path,
        help="a file of the questions to ask, one a line, or an evaluation set (questions.yaml: "
        "its held-out half) (default: three of the sample's)",
    )
    parser.add_argument(
        "--semantic-questions",
        type=Path,
        help="a file of the questions the semantic targets ask, one a line: questions lexical "
        "search does not answer confidently in the documents of KNOWLEDGE_DIR",
    )
    parser.add_argument(
        "--reuse-servers",
        action="store_true",
        help="one upstream and one server per target for the whole run (implied by --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even if a target is missed")
    args = parser.parse_args(argv)

    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    if not targets or not set(targets) <= set(TARGETS):
        parser.error(f"--targets takes some of {', '.join(TARGETS)}")
    workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    if not workloads or not set(workloads) <= set(WORKLOADS):
        parser.error(f"--workloads takes some of {', '.join(WORKLOADS)}")

    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    questions = Questions()
    if args.questions:
        questions = replace(questions, plain=read_questions(args.questions))
    if args.semantic_questions:
        questions = replace(questions, semantic=read_questions(args.semantic_questions))
    max_streams = pick(args.max_streams, 1000, 20)
    ladder = (10, 20) if quick else (100, 250, 500, 1000)
    steps = tuple(sorted({n for n in ladder if n < max_streams} | {max_streams}))
    plan = Plan(
        targets=tuple(t for t in TARGETS if t in targets),
        workloads=tuple(w for w in WORKLOADS if w in workloads),
        duration=pick(args.duration, 10.0, 1.5),
        warmup=pick(args.warmup, 2.0, 0.5),
        concurrency=pick(args.concurrency, 32, 4),
        saturation_deltas=50 if quick else 200,
        paced_concurrency=pick(args.paced_concurrency, 100, 8),
        paced_deltas=10 if quick else 200,
        delay=args.delay,
        steps=steps,
        idle_timeout=args.idle_timeout,
        hold_deltas=pick(args.hold_deltas, 200, 20),
        load_processes=max(1, args.load_processes),
        embeddings_latency=args.embeddings_latency,
        questions=questions,
    )
    args.reuse_servers = args.reuse_servers or quick
    return args, plan


def describe(plan: Plan, servers: Servers) -> None:
    print(
        f"targets: {', '.join(plan.targets)}; workloads: {', '.join(plan.workloads)}; "
        f"{plan.load_processes} load process(es); {os.cpu_count()} cores; "
        f"{'servers reused' if servers.reuse else 'fresh servers per measurement'}"
    )
    if "app" in plan.targets:
        environment = servers.app_environment("http://127.0.0.1:<port>/v1", "<n>")
        print("app settings that differ from the defaults:")
        database = make_url(environment["DATABASE_URL"])
        if database.password:
            environment["DATABASE_URL"] = database.render_as_string()  # password as ***
        for change in setting_changes(environment):
            print(f"  {change}")
        print("  (everything else is the default: DAILY_TOKEN_BUDGET=0 is no budget)")
        if (PROJECT_ROOT / ".env").exists():
            print("  warning: .env exists in the project and the app reads it too")
    questions = plan.questions
    default = " (the sample's)" if questions == Questions() else ""
    print(
        f"questions{default}: {len(questions.plain)} asked; {len(questions.semantic)} asked "
        "by the semantic targets"
    )
    load = os.getloadavg()[0]
    busy = ": other work shares the machine" if load > 0.5 else ""
    print(f"load average before the run: {load:.1f}{busy}")
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args, plan = parse_arguments(argv)
    raise_fd_limit()  # inherited by every child
    # ``timeout`` and CI stop with SIGTERM: leave through the ``finally`` blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-relay-")))
        servers = Servers(stack, folder, args.database_url, args.reuse_servers)
        load_before = os.getloadavg()
        describe(plan, servers)
        started_at = time.monotonic()
        if servers.reuse:
            servers.start_all(plan.targets)
        measurements = asyncio.run(run_plan(plan, servers))
        print(f"\nmeasured in {time.monotonic() - started_at:.0f} s")
    verdict_list = report(measurements, plan)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "plan": asdict(plan),
                    "load_average_before": load_before,
                    "measurements": [{**asdict(m), "summary": m.summary()} for m in measurements],
                    "targets": [asdict(v) for v in verdict_list],
                },
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )
    missed = any(verdict.passed is False for verdict in verdict_list)
    sys.exit(1 if missed and not args.no_fail else 0)


if __name__ == "__main__":
    main()
