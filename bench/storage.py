"""What storing conversations costs the time to the first delta, end to end over HTTP.

``uv run python -m bench.storage`` starts the app under uvicorn (``bench.serve``) once per
variant and compares, per answer engine, the time to ``meta`` and to the first delta:

- ``none``: conversations kept in memory, no database at all (the baseline);
- ``sqlite``: a SQLite file in a temporary folder;
- ``postgresql``: the server at BENCH_DATABASE_URL (default: the local one), in a database
  of its own (``bench_<pid>``) created for the run and dropped at its end; skipped, with
  the reason, if the server cannot be reached;
- ``mysql``: the MySQL or MariaDB server at BENCH_MYSQL_URL (default: the local one, user
  root), likewise in a database of its own, or skipped.

The ``responses`` engine relays the in-repo fake Responses API server, paced like a real
model (20 deltas, 20 ms apart); ``offline`` answers from the documents with no model. Rate
limits and semantic search are off (the fake serves no embeddings), in every variant. Each
variant answers ``--requests`` questions that each start a conversation, and as many
follow-ups in conversations of ``--turns`` turns. Requests are sequential, and the variants
take turns in batches so that drift on the machine affects them all alike.

The requirement: with storage, the p50 time to the first delta stays within ``--budget-ms``
(3 ms) of the same run without it. The command exits non-zero if any variant misses it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.processes import started, wait_until_listening
from common.sse import EventStreamDecoder
from infrastructure.database import create_engine
from testing.app_server import RunningApp, free_port
from testing.fake_responses_api import (
    SAMPLE_ANSWER_DELTAS,
    FakeResponsesAPI,
    Scenario,
    run_fake_responses_api,
)

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bench"
DEFAULT_MYSQL_URL = "mysql+asyncmy://root@127.0.0.1:3306/bench"
QUESTIONS = ["어떤 프로젝트를 했나요?", "When can she start?", "Kubernetes 경험이 있나요?"]
FOLLOW_UPS = ["그 전에는요?", "What was her role there?", "팀 규모는 어땠나요?"]
RUNS = ("new", "follow-up")
WARM_UP_REQUESTS = 20


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Samples:
    """Milliseconds from sending the request to ``meta``, to the first delta, to the end."""

    meta: list[float] = field(default_factory=list)
    delta: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


@dataclass
class Variant:
    engine: str
    storage: str
    app: RunningApp
    client: httpx2.Client
    samples: dict[str, Samples] = field(default_factory=lambda: {run: Samples() for run in RUNS})
    conversation_id: str | None = None
    turns_in_conversation: int = 0


@dataclass(frozen=True)
class Answer:
    conversation_id: str
    meta_ms: float
    delta_ms: float
    total_ms: float


# --- the app in a child process --------------------------------------------------------------


@contextmanager
def serve(environment: Mapping[str, str], startup_timeout: float = 60.0) -> Iterator[RunningApp]:
    """``python -m bench.serve`` on a free loopback port with only ``environment`` set."""
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), **environment}
    with started("app", ["-m", "bench.serve"], port, env) as server:
        wait_until_listening(server, "/ready", startup_timeout)
        yield RunningApp(server.origin, server.process, server.log_path)


# --- PostgreSQL and MySQL --------------------------------------------------------------------


async def _run_on_server(url: str, statement: str) -> None:
    """``statement`` outside a transaction, on PostgreSQL's ``postgres`` database (on MySQL,
    in no database)."""
    parsed = make_url(url)
    server = parsed.set(database="postgres" if parsed.get_backend_name() == "postgresql" else "")
    maintenance = create_engine(server.render_as_string(False))
    try:
        async with asyncio.timeout(10), maintenance.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text(statement))
    finally:
        await maintenance.dispose()


def _quoted_database(url: str) -> str:
    name = make_url(url).database or ""
    if make_url(url).get_backend_name() == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def own_database(url: str) -> Iterator[str | None]:
    """A new, empty database for this run on the server at ``url``; dropped at the end.

    Named after the URL's database and this process, so runs at the same time do not empty
    each other's tables. Yields its URL, or None (with the reason printed) if unreachable.
    """
    parsed = make_url(url)
    kind = parsed.get_backend_name()
    own = parsed.set(database=f"{parsed.database or 'bench'}_{os.getpid()}")
    own_url = own.render_as_string(False)
    quoted = _quoted_database(own_url)
    drop = f"DROP DATABASE IF EXISTS {quoted}" + (" WITH (FORCE)" if kind == "postgresql" else "")
    create = f"CREATE DATABASE {quoted}" + (" CHARACTER SET utf8mb4" if kind == "mysql" else "")
    try:
        asyncio.run(_run_on_server(own_url, drop))
        asyncio.run(_run_on_server(own_url, create))
    except Exception as error:
        shown = parsed.render_as_string(hide_password=True)
        print(f"{kind} skipped: not reachable at {shown} ({type(error).__name__}: {error})")
        yield None
        return
    try:
        yield own_url
    finally:
        asyncio.run(_run_on_server(own_url, drop))


# --- measuring -------------------------------------------------------------------------------


def ask(client: httpx2.Client, body: Mapping[str, object]) -> Answer:
    """One streamed answer, read to its end; times taken when each event arrives."""
    started = time.perf_counter()
    meta_at = delta_at = None
    conversation_id = None
    finished = False
    decoder = EventStreamDecoder()
    with client.stream("POST", "/openai-response/sse", json=body) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
        for chunk in response.iter_bytes():
            now = time.perf_counter()
            for event in decoder.feed(chunk):
                if event.type == "meta" and meta_at is None:
                    meta_at = now
                    conversation_id = json.loads(event.data)["conversation_id"]
                elif event.type == "message" and meta_at is not None and delta_at is None:
                    delta_at = now
                finished = finished or event.type in {"done", "error"}
    ended = time.perf_counter()
    if meta_at is None or delta_at is None or conversation_id is None or not finished:
        raise RuntimeError("a stream had no meta, no delta or no end")
    return Answer(
        conversation_id,
        (meta_at - started) * 1e3,
        (delta_at - started) * 1e3,
        (ended - started) * 1e3,
    )


def record(samples: Samples, answer: Answer) -> None:
    samples.meta.append(answer.meta_ms)
    samples.delta.append(answer.delta_ms)
    samples.total.append(answer.total_ms)


def new_conversation(variant: Variant, number: int) -> Answer:
    return ask(variant.client, {"input": QUESTIONS[number % len(QUESTIONS)]})


def follow_up(variant: Variant, number: int, turns: int) -> Answer | None:
    """The next follow-up; None when this turn had to start a conversation instead."""
    if variant.conversation_id is None or variant.turns_in_conversation >= turns:
        answer = new_conversation(variant, number)
        variant.conversation_id, variant.turns_in_conversation = answer.conversation_id, 1
        return None
    body = {
        "input": FOLLOW_UPS[number % len(FOLLOW_UPS)],
        "conversation_id": variant.conversation_id,
    }
    answer = ask(variant.client, body)
    if answer.conversation_id != variant.conversation_id:
        raise RuntimeError("a follow-up landed in another conversation")
    variant.turns_in_conversation += 1
    return answer


def take_turns(variants: list[Variant], requests: int, batch: int, turns: int) -> None:
    """``requests`` answers of each run per variant, the variants taking turns by batches."""
    counts = {id(variant): dict.fromkeys(RUNS, 0) for variant in variants}
    number = 0
    for round_number in range((requests + batch - 1) // batch):
        # Rotate who goes first, so no variant always follows the same neighbour.
        shift = round_number % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            with naming_the_variant(variant):
                done = counts[id(variant)]
                while done["new"] < min(requests, (round_number + 1) * batch):
                    record(variant.samples["new"], new_conversation(variant, number))
                    done["new"] += 1
                    number += 1
                while done["follow-up"] < min(requests, (round_number + 1) * batch):
                    answer = follow_up(variant, number, turns)
                    number += 1
                    if answer is not None:
                        record(variant.samples["follow-up"], answer)
                        done["follow-up"] += 1


@contextmanager
def naming_the_variant(variant: Variant) -> Iterator[None]:
    """A failed request names its variant and shows the end of that app's log."""
    try:
        yield
    except (RuntimeError, httpx2.HTTPError) as error:
        log = "\n".join(variant.app.log().splitlines()[-15:])
        raise RuntimeError(
            f"{variant.engine} engine, storage {variant.storage}: {error}\n{log}"
        ) from error


def warm_up(variant: Variant, turns: int) -> None:
    for number in range(WARM_UP_REQUESTS):
        with naming_the_variant(variant):
            new_conversation(variant, number)
            follow_up(variant, number, turns)
    variant.conversation_id = None


# --- reporting -------------------------------------------------------------------------------


def report(variants: list[Variant], budget_ms: float) -> bool:
    """Print the table; True if every variant with storage is within the budget."""
    passed = True
    header = (
        f"{'engine':<10} {'run':<10} {'storage':<11} {'meta p50':>9} {'TTFD p50':>9} "
        f"{'TTFD p99':>9} {'Δ p50':>8}  verdict"
    )
    print(header)
    print("-" * len(header))
    for run in RUNS:
        for engine in dict.fromkeys(variant.engine for variant in variants):
            group = [variant for variant in variants if variant.engine == engine]
            baseline = next(v for v in group if v.storage == "none").samples[run]
            baseline_p50 = percentile(baseline.delta, 0.5)
            for variant in group:
                samples = variant.samples[run]
                p50 = percentile(samples.delta, 0.5)
                difference = p50 - baseline_p50
                if variant.storage == "none":
                    verdict, change = "baseline", ""
                elif difference <= budget_ms:
                    verdict, change = "PASS", f"{difference:+.2f}"
                else:
                    verdict, change = "FAIL", f"{difference:+.2f}"
                    passed = False
                print(
                    f"{engine:<10} {run:<10} {variant.storage:<11} "
                    f"{percentile(samples.meta, 0.5):>9.2f} {p50:>9.2f} "
                    f"{percentile(samples.delta, 0.99):>9.2f} {change:>8}  {verdict}"
                )
    print(f"\nms; {len(variants[0].samples['new'].delta)} requests per run; budget {budget_ms} ms")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="per variant and run")
    parser.add_argument("--budget-ms", type=float, default=3.0, help="allowed p50 difference")
    parser.add_argument("--batch", type=int, default=10, help="requests per variant per turn")
    parser.add_argument("--turns", type=int, default=10, help="turns per follow-up conversation")
    parser.add_argument("--deltas", type=int, default=20, help="deltas per paced answer")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds between deltas")
    parser.add_argument("--engines", default="responses,offline", help="comma-separated")
    parser.add_argument(
        "--postgres-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--mysql-url", default=os.environ.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL))
    parser.add_argument(
        "--storages", default="sqlite,postgresql,mysql", help="comma-separated, beside none"
    )
    args = parser.parse_args()
    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    if not engines or not set(engines) <= {"responses", "offline"}:
        parser.error("--engines takes responses and/or offline")
    wanted = [storage.strip() for storage in args.storages.split(",") if storage.strip()]
    if not set(wanted) <= {"sqlite", "postgresql", "mysql"}:
        parser.error("--storages takes sqlite, postgresql and/or mysql")
    if args.turns < 2:
        parser.error("--turns must be at least 2: a conversation needs a follow-up")

    # ``timeout`` and CI stop with SIGTERM: exit through the ``finally`` blocks, so the apps
    # stop and the database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with ExitStack() as stack:
        servers = {"postgresql": args.postgres_url, "mysql": args.mysql_url}
        urls: dict[str, str | None] = {
            kind: stack.enter_context(own_database(url))
            for kind, url in servers.items()
            if kind in wanted
        }
        storages = ["none"] + [
            kind
            for kind in ("sqlite", "postgresql", "mysql")
            if kind in wanted and (kind == "sqlite" or urls.get(kind))
        ]
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-storage-")))

        scenario = Scenario(
            deltas=SAMPLE_ANSWER_DELTAS[: args.deltas], delay_between_deltas=args.delay
        )
        fake = stack.enter_context(
            run_fake_responses_api(FakeResponsesAPI(scenario, record_requests=False))
        )
        engine_environments = {
            "responses": {
                "ENGINE": "responses",
                "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_API_KEY": "sk-bench",
                "UPSTREAM_MAX_RETRIES": "0",
            },
            "offline": {"ENGINE": "offline"},
        }
        variants: list[Variant] = []
        for engine in engines:
            for storage in storages:
                storage_environment = {
                    "none": {"BENCH_STORAGE": "none"},
                    # One SQLite file per app, as each deployment has its own.
                    "sqlite": {"DATABASE_URL": f"sqlite+aiosqlite:///{folder / f'{engine}.db'}"},
                    "postgresql": {"DATABASE_URL": urls.get("postgresql") or ""},
                    "mysql": {"DATABASE_URL": urls.get("mysql") or ""},
                }[storage]
                environment = {
                    "LOG_LEVEL": "warning",
                    # Hundreds of questions a minute from one address: not what is measured.
                    "RATE_LIMIT_PER_MINUTE": "0",
                    # The fake serves no embeddings: a failing call per question is only noise.
                    "SEMANTIC_SEARCH": "false",
                    "EMBEDDINGS_CACHE": str(folder / "embeddings.sqlite3"),
                    **engine_environments[engine],
                    **storage_environment,
                }
                app = stack.enter_context(serve(environment))
                client = stack.enter_context(httpx2.Client(base_url=app.base_url, timeout=30))
                variants.append(Variant(engine, storage, app, client))

        for variant in variants:
            warm_up(variant, args.turns)
        print(
            f"{len(variants)} apps; {args.requests} new conversations and {args.requests} "
            f"follow-ups each; answers of {len(scenario.deltas)} deltas {args.delay}s apart",
            flush=True,
        )
        started = time.monotonic()
        take_turns(variants, args.requests, args.batch, args.turns)
        print(f"measured in {time.monotonic() - started:.0f} s\n")
        passed = report(variants, args.budget_ms)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
