"""What starting an answer costs the server: ``uv run python -m bench.start_profile``.

Starts the fake Responses API (answers of ``--deltas`` deltas, no pacing) and the app as
``bench.relay`` runs it (SQLite, semantic search off), warms it up, then sends ``--bursts``
bursts of ``--burst`` questions at once, each read to its end, and reports the server's CPU
time (utime + stime, from ``/proc``) per answer. Short answers make that mostly the cost of
starting one: validation, the rate limit, the search, storing the question, building the
model request, the middleware and the SSE response.

With ``--profile FILE`` the server runs under cProfile during the bursts only (SIGUSR1 turns
it on and off) and writes its statistics to FILE; the top functions by cumulative and own time
are printed. The profiler roughly doubles the CPU figures: compare runs with it off.

With ``--callgrind`` the server runs under valgrind's callgrind with instrumentation off until
the warm-up is done, on for the bursts only, and the instructions it executed per answer are
reported: a count that other sessions' load on the machine does not change (a run takes a few
minutes: valgrind runs the server about 50 times slower). ``PYTHONHASHSEED`` is fixed for it.

``--hold N`` holds N paced streams open instead and reports what the server's heap grew by,
by file, line or traceback (``--group``; tracemalloc).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import httpx2

from bench.processes import started, wait_until_listening
from bench.relay import (
    QUESTIONS,
    SSE_PATH,
    app_environment,
    cpu_seconds,
    read_questions,
    set_scenario,
)
from testing.app_server import free_port


def serve_profiled(out: Path) -> None:
    """The app under uvicorn, profiled between two SIGUSR1 (statistics written at the second)."""
    from api.serving import serve
    from bootstrap import create_app
    from settings import Settings

    settings = Settings()
    app = create_app(settings)
    profiler = cProfile.Profile()
    running = False
    collections: dict[int, list[float]] = {0: [], 1: [], 2: []}
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        elif running:
            collections[info["generation"]].append(time.perf_counter() - began[0])

    gc.callbacks.append(timed)

    def toggle(_signum: int, _frame: object) -> None:
        nonlocal running
        if running:
            profiler.disable()
            profiler.dump_stats(out)
            out.with_suffix(".gc").write_text(
                " ".join(
                    f"gen{g}: {len(t)} collections {sum(t) * 1000:.0f} ms"
                    for g, t in collections.items()
                )
            )
        else:
            for times in collections.values():
                times.clear()
            profiler.enable()
        running = not running

    signal.signal(signal.SIGUSR1, toggle)
    snapshots: list[tracemalloc.Snapshot] = []

    def snapshot(_signum: int, _frame: object) -> None:
        snapshots.append(tracemalloc.take_snapshot())
        if len(snapshots) == 1:
            tracemalloc.reset_peak()
            return
        traced, peak = tracemalloc.get_traced_memory()
        if len(snapshots) == 2:
            before, after = snapshots
            grouping = os.environ.get("BENCH_TRACEMALLOC", "filename")
            grown = after.compare_to(before, grouping)
            total = sum(stat.size_diff for stat in grown)
            lines = [
                f"heap grew by {total / 1024:.0f} KiB in all; while the streams opened it "
                f"peaked {(peak - traced) / 1024:.0f} KiB above where it is now"
            ]
            for stat in grown[: 30 if grouping == "filename" else 60]:
                lines.append(
                    f"{stat.size_diff / 1024:8.0f} KiB {stat.count_diff:7d} objects  "
                    f"{stat.traceback[0].filename}"
                    + ("" if grouping == "filename" else f":{stat.traceback[0].lineno}")
                )
                if grouping == "traceback":
                    lines += [f"        {frame}" for frame in list(stat.traceback)[1:]]
            out.with_suffix(".mem").write_text("\n".join(lines))

    if grouping := os.environ.get("BENCH_TRACEMALLOC"):
        tracemalloc.start(8 if grouping == "traceback" else 1)
        signal.signal(signal.SIGUSR2, snapshot)
    serve(app, settings)


async def burst(
    client: httpx2.AsyncClient,
    origin: str,
    size: int,
    questions: Sequence[str] = QUESTIONS,
    start: int = 0,
) -> float:
    """``size`` questions at once (``questions`` in turn, from the ``start``-th), each read to
    its end; the median time to the first byte."""

    async def one(n: int) -> float:
        begun = time.perf_counter()
        body = {"input": questions[(start + n) % len(questions)]}
        async with client.stream("POST", origin + SSE_PATH, json=body) as response:
            response.raise_for_status()
            first = None
            async for _ in response.aiter_bytes():
                first = first or time.perf_counter() - begun
            return first or float("nan")

    firsts = sorted(await asyncio.gather(*(one(n) for n in range(size))))
    return firsts[len(firsts) // 2]


async def hold(pid: int, origin: str, size: int) -> None:
    """``size`` streams opened at once; a heap snapshot before, and once each has a delta."""
    limits = httpx2.Limits(max_connections=size, max_keepalive_connections=0)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as client:
        await burst(client, origin, 5)
        os.kill(pid, signal.SIGUSR2)
        await asyncio.sleep(1)
        opened: list[asyncio.Event] = [asyncio.Event() for _ in range(size)]

        async def one(n: int) -> None:
            body = {"input": QUESTIONS[n % len(QUESTIONS)]}
            async with client.stream("POST", origin + SSE_PATH, json=body) as response:
                async for chunk in response.aiter_bytes():
                    if b"\ndata:" in chunk or chunk.startswith(b"data:"):
                        opened[n].set()

        streams = [asyncio.create_task(one(n)) for n in range(size)]
        await asyncio.gather(*(event.wait() for event in opened))
        os.kill(pid, signal.SIGUSR2)
        await asyncio.sleep(0.5)
        for stream in streams:
            stream.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


SERVER_HOST = "127.0.0.1"


def callgrind_control(pid: int, *arguments: str) -> None:
    control = shutil.which("callgrind_control")
    if control is None:
        raise RuntimeError("callgrind_control (valgrind) is not on PATH")
    done = subprocess.run(  # noqa: S603 - valgrind's own tool, on our own child
        [control, *arguments, str(pid)],
        capture_output=True,
        text=True,
        check=False,
        # valgrind names its control pipes after $HOST, which is the app's HOST setting here.
        env={**os.environ, "HOST": SERVER_HOST},
    )
    if "OK." not in done.stdout:  # it exits 0 even when it found no such process
        raise RuntimeError(f"callgrind_control {' '.join(arguments)}: {done.stdout}{done.stderr}")


def callgrind_instructions(folder: Path) -> int:
    """The instructions counted in the dumps callgrind wrote to ``folder`` (``totals:``)."""
    total = 0
    for dump in folder.glob("callgrind.out*"):
        found = re.search(rb"^totals: (\d+)", dump.read_bytes(), re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


async def drive(
    pid: int,
    origin: str,
    size: int,
    bursts: int,
    profiled: bool,
    callgrind: Path | None,
    questions: Sequence[str],
) -> None:
    timeout = 600 if callgrind else 60
    limits = httpx2.Limits(max_connections=size, max_keepalive_connections=0)
    async with httpx2.AsyncClient(limits=limits, timeout=timeout) as client:
        await burst(client, origin, min(size, 20))
        await burst(client, origin, min(size, 20))
        if profiled:
            os.kill(pid, signal.SIGUSR1)
        if callgrind:
            callgrind_control(pid, "--instr=on")

        cpu = cpu_seconds(pid)
        medians = [
            await burst(client, origin, size, questions, start=number * size)
            for number in range(bursts)
        ]
        cpu = cpu_seconds(pid) - cpu
        if profiled:
            os.kill(pid, signal.SIGUSR1)
        if callgrind:
            callgrind_control(pid, "--instr=off")
            callgrind_control(pid, "--dump")
    answers = size * bursts
    if callgrind:
        deadline = time.monotonic() + 60
        while not (instructions := callgrind_instructions(callgrind)):
            if time.monotonic() > deadline:
                raise TimeoutError("callgrind wrote no dump")
            await asyncio.sleep(0.5)
        print(
            f"burst {size} x {bursts}: server {instructions / answers / 1e6:.2f} million "
            f"instructions per answer (callgrind)"
        )
        return
    print(
        f"burst {size} x {bursts}: server CPU {cpu * 1000 / answers:.2f} ms per answer, "
        f"first byte median {sorted(medians)[len(medians) // 2] * 1000:.0f} ms "
        f"(load average {os.getloadavg()[0]:.2f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.start_profile", description=__doc__)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--deltas", type=int, default=2)
    parser.add_argument(
        "--questions",
        type=Path,
        help="ask these (one a line, or an evaluation set's held-out half) in the measured "
        "bursts, in turn; the warm-up asks the sample's three, so a question of the file is "
        "new the first time it is asked",
    )
    parser.add_argument("--profile", type=Path, help="write cProfile statistics here")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--database-url", help="instead of a new SQLite file")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="count the server's instructions per answer under valgrind (slow; no timings)",
    )
    parser.add_argument(
        "--hold",
        type=int,
        help="instead of bursts: hold this many paced streams open and report what the heap "
        "grew by, per file (tracemalloc)",
    )
    parser.add_argument(
        "--group",
        choices=("filename", "lineno", "traceback"),
        default="filename",
        help="with --hold: what to group the heap's growth by (traceback: 8 frames)",
    )
    parser.add_argument("--serve-profiled", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_profiled:
        serve_profiled(args.serve_profiled)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        upstream_port, port = free_port(), free_port()
        argv_upstream = ["-m", "bench.upstream", "--port", str(upstream_port)]
        with started("upstream", argv_upstream, upstream_port, {}) as upstream:
            wait_until_listening(upstream, "/health")
            set_scenario(upstream, 200 if args.hold else args.deltas, 0.02 if args.hold else 0.0)
            env = {"HOST": SERVER_HOST, "PORT": str(port)}
            if args.hold:
                env["BENCH_TRACEMALLOC"] = args.group
            env |= app_environment(
                f"{upstream.origin}/v1",
                args.database_url or f"sqlite+aiosqlite:///{Path(folder) / 'app.db'}",
            )
            stats = args.profile.resolve() if args.profile else Path(folder) / "unused.prof"
            server_argv = ["-m", "bench.start_profile", "--serve-profiled", str(stats)]
            launcher: list[str] = []
            dumps = Path(folder) / "callgrind"
            if args.callgrind:
                valgrind = shutil.which("valgrind")
                if valgrind is None:
                    parser.error("--callgrind needs valgrind on PATH")
                dumps.mkdir()
                env["PYTHONHASHSEED"] = "0"
                launcher = [
                    valgrind,
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={dumps}/callgrind.out.%p",
                ]
            with started("app", server_argv, port, env, launcher) as server:
                wait_until_listening(server, "/ready", timeout=600 if args.callgrind else 120)
                if args.hold:
                    asyncio.run(hold(server.pid, server.origin, args.hold))
                    memory = stats.with_suffix(".mem")
                    deadline = time.monotonic() + 120
                    while not memory.exists() and time.monotonic() < deadline:
                        time.sleep(0.2)
                    time.sleep(0.5)
                    print(memory.read_text())
                    return 0
                asyncio.run(
                    drive(
                        server.pid,
                        server.origin,
                        args.burst,
                        args.bursts,
                        bool(args.profile),
                        dumps if args.callgrind else None,
                        read_questions(args.questions) if args.questions else QUESTIONS,
                    )
                )
                if args.profile:
                    deadline = time.monotonic() + 30
                    while not stats.exists() and time.monotonic() < deadline:
                        time.sleep(0.1)
    if args.profile:
        print(args.profile.resolve().with_suffix(".gc").read_text())
        report = pstats.Stats(str(args.profile), stream=sys.stdout)
        report.sort_stats("cumulative").print_stats(args.top)
        report.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
