"""The fake Responses API server as a process of its own, for load benchmarks.

``uv run python -m bench.upstream --port 9100 --deltas 200 --delay 0.02`` serves
:class:`~testing.fake_responses_api.FakeResponsesAPI` under uvicorn (with uvicorn's
defaults, uvloop and httptools when installed), answering every request with ``--deltas``
text deltas ``--delay`` seconds apart. Nothing is recorded, so memory stays flat under load.

Why a process: in ``bench.relay`` the upstream must not share a CPU budget (or an event loop)
with the server being measured, nor with the load generator.

``POST /bench/scenario`` with ``{"deltas": int, "delay": float}`` (and optionally
``"embeddings_latency": float``, seconds before each ``/v1/embeddings`` answer) changes the
answers for later requests, so one upstream can serve several workloads in a row. It is the
only addition to the fake's wire behaviour, and it is not a path the OpenAI SDK ever calls.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from itertools import cycle, islice
from typing import Any

import uvicorn

from testing.fake_responses_api import SAMPLE_ANSWER_DELTAS, FakeResponsesAPI, Scenario

SCENARIO_PATH = "/bench/scenario"
OPENAI_EMBEDDING_DIMENSIONS = 1536
"""Vectors as long as the default embedding model's, so that reading them costs what it does."""


# Ends every delta, and appears nowhere else: a relay may send several deltas in one event
# (the app sends those that arrive together as one), so clients count deltas by this mark.
DELTA_MARK = "|"


def bench_deltas(count: int) -> tuple[str, ...]:
    """``count`` token-sized deltas of the sample answer (Korean, English, markdown), cycled,
    each ending with ``DELTA_MARK``.

    Line breaks become spaces: the straightforward relay frames each delta as one ``data:``
    line, so a delta with a line break would split into several events there and the three
    targets would no longer count the same deltas.
    """
    deltas = islice(cycle(SAMPLE_ANSWER_DELTAS), count)
    return tuple(delta.replace("\n", " ") + DELTA_MARK for delta in deltas)


def bench_scenario(deltas: int, delay: float) -> Scenario:
    return Scenario(deltas=bench_deltas(deltas), delay_between_deltas=delay)


class BenchUpstream:
    """The fake, plus the one control path that swaps its default scenario."""

    def __init__(self, api: FakeResponsesAPI) -> None:
        self.api = api

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == SCENARIO_PATH:
            await self._set_scenario(receive, send)
        else:
            await self.api(scope, receive, send)

    async def _set_scenario(self, receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            wanted = json.loads(body)
            scenario = bench_scenario(int(wanted["deltas"]), float(wanted["delay"]))
            latency = float(wanted.get("embeddings_latency", self.api.embeddings_latency))
            status = 204
        except (ValueError, KeyError, TypeError, AttributeError):
            status = 400
        else:
            self.api.default_scenario = scenario
            self.api.embeddings_latency = latency
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--deltas", type=int, default=200, help="text deltas per answer")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument(
        "--embeddings-latency", type=float, default=0.0, help="seconds per embeddings answer"
    )
    parser.add_argument(
        "--embedding-dimensions",
        type=int,
        default=OPENAI_EMBEDDING_DIMENSIONS,
        help="a vector's length (text-embedding-3-small's: 1536)",
    )
    args = parser.parse_args(argv)
    api = FakeResponsesAPI(
        bench_scenario(args.deltas, args.delay),
        record_requests=False,
        embeddings_latency=args.embeddings_latency,
        embedding_dimensions=args.embedding_dimensions,
    )
    uvicorn.run(
        BenchUpstream(api),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
