"""Time to ``meta`` and to the first delta, end to end over HTTP.

``uv run python -m bench.first_delta`` starts the app twice under uvicorn on loopback: with
the offline engine, and relaying the in-repo fake Responses API server (no pacing), and
times sequential requests against each. Issue-8's load benchmark builds on this.
"""

from __future__ import annotations

import argparse
import time

import httpx2

from bench.relay import QUESTIONS
from testing.app_server import RunningApp, run_app
from testing.fake_responses_api import FakeResponsesAPI, run_fake_responses_api


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(app: RunningApp, requests: int) -> tuple[list[float], list[float], list[float]]:
    to_meta: list[float] = []
    to_delta: list[float] = []
    total: list[float] = []
    with httpx2.Client(base_url=app.base_url, timeout=30) as client:
        for number in range(requests):
            body = {"input": QUESTIONS[number % len(QUESTIONS)]}
            started = time.perf_counter()
            meta_at = delta_at = None
            with client.stream("POST", "/openai-response/sse", json=body) as response:
                for line in response.iter_lines():
                    now = time.perf_counter()
                    if meta_at is None and line.startswith("event: meta"):
                        meta_at = now
                    elif (
                        delta_at is None
                        and meta_at
                        and line.startswith("data:")
                        and not line.startswith("data: {")
                    ):
                        delta_at = now
            finished = time.perf_counter()
            if meta_at is None or delta_at is None:
                raise RuntimeError("a stream had no meta or no delta")
            to_meta.append((meta_at - started) * 1e3)
            to_delta.append((delta_at - started) * 1e3)
            total.append((finished - started) * 1e3)
    return to_meta, to_delta, total


def report(label: str, samples: tuple[list[float], list[float], list[float]]) -> None:
    names = ("meta", "first delta", "whole answer")
    figures = ", ".join(
        f"{name} p50 {percentile(s, 0.5):.2f} ms / p99 {percentile(s, 0.99):.2f} ms"
        for name, s in zip(names, samples, strict=True)
    )
    print(f"{label:<10} {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    with run_app({"LOG_LEVEL": "warning"}) as app:
        measure(app, 20)  # warm up
        report("offline", measure(app, args.requests))

    with run_fake_responses_api(FakeResponsesAPI(record_requests=False)) as fake:
        environment = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": fake.base_url,
            "SEMANTIC_SEARCH": "false",
            "LOG_LEVEL": "warning",
        }
        with run_app(environment) as app:
            measure(app, 20)
            report("openai", measure(app, args.requests))


if __name__ == "__main__":
    main()
