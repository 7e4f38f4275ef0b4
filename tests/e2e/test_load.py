"""Many recruiters at once: every stream arrives whole."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from testing.app_server import RunningApp
from testing.fake_responses_api import RunningFake, Scenario
from tests.sse_client import Answer, parse_sse

pytestmark = pytest.mark.e2e

STREAMS = 200
DELTAS = [f"줄 {n}: line {n}\n" if n % 3 == 0 else f"word{n} " for n in range(40)]


async def test_two_hundred_concurrent_streams_all_arrive_whole(
    openai_app: RunningApp, upstream: RunningFake
) -> None:
    paced = Scenario(deltas=DELTAS, delay_between_deltas=0.01)
    upstream.api.enqueue(*[paced] * STREAMS)
    limits = httpx2.Limits(max_connections=STREAMS, max_keepalive_connections=STREAMS)
    async with httpx2.AsyncClient(
        base_url=openai_app.base_url, limits=limits, timeout=60
    ) as client:

        async def one(number: int) -> Answer:
            body = {"input": f"Question number {number} about Minji"}
            async with client.stream("POST", "/openai-response/sse", json=body) as response:
                assert response.status_code == 200
                return Answer(parse_sse([chunk async for chunk in response.aiter_text()]))

        answers = await asyncio.gather(*(one(n) for n in range(STREAMS)))

    expected = "".join(DELTAS)
    assert all(answer.terminal == "done" for answer in answers)
    assert all(answer.text == expected for answer in answers)
    ids = {answer.data_of("meta")["conversation_id"] for answer in answers}
    assert len(ids) == STREAMS
