"""First text and app CPU per question: ``ENGINE=responses`` against ``ENGINE=agents``.

``uv run python -m bench.agents`` starts the in-repo fake Responses API (in this process, on
its own thread) paced like a model: every response starts ``--latency`` seconds after the
request, then streams ``--deltas`` text deltas ``--delay`` apart. For the agents it answers as
an agents model (``FakeResponsesAPI(agent_moves=True)``): a triage request hands off, a
specialist searches once, then answers. Then, for each engine, the app under uvicorn (its own
process, SQLite in a temporary folder) gets:

1. ``sequential``: ``--questions`` questions one after another (questions whose specialist is
   clear, in both languages): the time from sending the request to the first text delta at
   the client (p50, p90), and the app's CPU time per question (utime + stime of its process,
   from ``/proc/<pid>/stat``, over all the questions: not wall-clock);
2. ``load``: ``--concurrency`` clients asking again and again for ``--duration`` seconds:
   answers per second, first-text p50/p90 under load, CPU per answer and per 1,000 deltas,
   errors.

The targets: ``responses``; ``agents-direct`` (``AGENTS_DIRECT_ROUTING=true``: the clear
questions start at their specialist, two model calls); ``agents-triage``
(``AGENTS_DIRECT_ROUTING=false``: every question through the triage model, three calls, as
before issue 20). The machine's load average is printed with the figures: wall-clock times
on a shared machine move with it, CPU times much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2

from bench.first_delta import percentile
from bench.upstream import bench_deltas
from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import FakeResponsesAPI, Scenario, run_fake_responses_api

QUESTIONS = ("When can she start?", "어떤 프로젝트를 했나요?", "학력이 어떻게 되나요?")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TARGETS: dict[str, Mapping[str, str]] = {
    "responses": {"ENGINE": "responses"},
    "agents-direct": {"ENGINE": "agents", "AGENTS_DIRECT_ROUTING": "true"},
    "agents-triage": {"ENGINE": "agents", "AGENTS_DIRECT_ROUTING": "false"},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Answered:
    first_text: float
    deltas: int
    ok: bool


async def ask(client: httpx2.AsyncClient, question: str) -> Answered:
    started = time.perf_counter()
    first: float | None = None
    deltas = 0
    terminal = ""
    event = ""
    async with client.stream("POST", "/openai-response/sse", json={"input": question}) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and not event:
                if first is None:
                    first = time.perf_counter() - started
                deltas += line.count("|")
            elif not line:
                if event in {"done", "error"}:
                    terminal = event
                event = ""
    ok = reply.status_code == 200 and terminal == "done" and first is not None
    return Answered(first if first is not None else float("nan"), deltas, ok)


async def sequential(app: RunningApp, count: int) -> tuple[list[float], float, int]:
    async with httpx2.AsyncClient(base_url=app.base_url, timeout=60) as client:
        for question in QUESTIONS:  # warm up
            await ask(client, question)
        before = cpu_seconds(app.process.pid)
        answers = [await ask(client, QUESTIONS[n % len(QUESTIONS)]) for n in range(count)]
        spent = cpu_seconds(app.process.pid) - before
    return [a.first_text for a in answers if a.ok], spent / count, sum(not a.ok for a in answers)


async def load(app: RunningApp, concurrency: int, duration: float) -> dict[str, float]:
    answers: list[Answered] = []
    limits = httpx2.Limits(max_connections=concurrency + 4)
    async with httpx2.AsyncClient(base_url=app.base_url, timeout=120, limits=limits) as client:
        stop_at = time.perf_counter() + duration

        async def client_loop(number: int) -> None:
            while time.perf_counter() < stop_at:
                answers.append(await ask(client, QUESTIONS[number % len(QUESTIONS)]))

        before = cpu_seconds(app.process.pid)
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
        spent = cpu_seconds(app.process.pid) - before
    good = [a for a in answers if a.ok]
    deltas = sum(a.deltas for a in good)
    firsts = [a.first_text for a in good]
    return {
        "answers_per_s": len(good) / elapsed,
        "first_p50": percentile(firsts, 0.5) if firsts else float("nan"),
        "first_p90": percentile(firsts, 0.9) if firsts else float("nan"),
        "cpu_ms_per_answer": spent * 1e3 / max(len(good), 1),
        "cpu_ms_per_1000_deltas": spent * 1e6 / max(deltas, 1),
        "errors": len(answers) - len(good),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agents", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds to first output")
    parser.add_argument("--deltas", type=int, default=50)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between deltas")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--targets", default=",".join(TARGETS))
    args = parser.parse_args()

    paced = Scenario(
        deltas=bench_deltas(args.deltas),
        delay_between_deltas=args.delay,
        delay_before_first_delta=args.latency,
    )
    api = FakeResponsesAPI(paced, record_requests=False, agent_moves=True)
    print(f"fake: {args.latency:g} s to first output, {args.deltas} deltas {args.delay:g} s apart")
    with run_fake_responses_api(api) as fake:
        for name in args.targets.split(","):
            folder = tempfile.mkdtemp(prefix="bench-agents-")
            environment = {
                **TARGETS[name],
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": fake.base_url,
                "SEMANTIC_SEARCH": "false",
                "FALLBACK_TO_OFFLINE": "false",
                "RATE_LIMIT_PER_MINUTE": "0",
                "LOG_LEVEL": "warning",
                "DATABASE_URL": f"sqlite+aiosqlite:///{folder}/bench.sqlite3",
            }
            with run_app(environment) as app:
                firsts, cpu, errors = asyncio.run(sequential(app, args.questions))
                print(
                    f"{name:14} sequential: first text p50 {percentile(firsts, 0.5) * 1e3:.0f} ms"
                    f" p90 {percentile(firsts, 0.9) * 1e3:.0f} ms; app CPU "
                    f"{cpu * 1e3:.1f} ms/question; errors {errors}; load {load_average()}"
                )
                figures = asyncio.run(load(app, args.concurrency, args.duration))
                print(
                    f"{name:14} load x{args.concurrency}: {figures['answers_per_s']:.1f} "
                    f"answers/s, first text p50 {figures['first_p50'] * 1e3:.0f} ms p90 "
                    f"{figures['first_p90'] * 1e3:.0f} ms, CPU "
                    f"{figures['cpu_ms_per_answer']:.1f} ms/answer "
                    f"{figures['cpu_ms_per_1000_deltas']:.0f} ms/1000 deltas, errors "
                    f"{figures['errors']:.0f}; load {load_average()}"
                )


if __name__ == "__main__":
    main()
