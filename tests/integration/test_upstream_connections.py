"""A finished answer gives its upstream connection back: the next answer does not reconnect."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI

from domain.models import AnswerDone, AnswerRequest, Message, TextDelta
from infrastructure.openai_engine import ResponsesEngine
from testing.fake_responses_api import FakeResponsesAPI, Scenario, run_fake_responses_api


class PeerRecordingAPI(FakeResponsesAPI):
    """The fake, noting the client address (host, port) of each request: one per connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.peers: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.peers.append(tuple(scope["client"]))
        await super().__call__(scope, receive, send)


def question() -> AnswerRequest:
    return AnswerRequest(
        messages=(Message("user", "Where did she work?"),), model="gpt-test", grounding=()
    )


async def test_sequential_answers_share_one_upstream_connection() -> None:
    api = PeerRecordingAPI(Scenario(deltas=("one ", "two")))
    with run_fake_responses_api(api) as running:
        client = AsyncOpenAI(base_url=running.base_url, api_key="sk-test", max_retries=0)
        engine = ResponsesEngine(client, max_output_tokens=100)
        for _ in range(3):
            events = [event async for event in engine.stream_answer(question())]
            assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "one two"
            assert isinstance(events[-1], AnswerDone)
        await client.close()
    assert len(api.peers) == 3
    assert len(set(api.peers)) == 1, api.peers


async def test_an_answer_closed_early_does_not_leave_its_connection_in_the_pool() -> None:
    api = PeerRecordingAPI(Scenario(deltas=("one ",) * 50, delay_between_deltas=0.01))
    with run_fake_responses_api(api) as running:
        client = AsyncOpenAI(base_url=running.base_url, api_key="sk-test", max_retries=0)
        engine = ResponsesEngine(client, max_output_tokens=100)
        stream = engine.stream_answer(question())
        assert isinstance(await anext(stream), TextDelta)
        await stream.aclose()  # the recruiter left mid-answer
        assert api.wait_for(lambda: api.closed_by_client == 1)
        api.default_scenario = Scenario(deltas=("again",))
        events = [event async for event in engine.stream_answer(question())]
        assert isinstance(events[-1], AnswerDone)
        await client.close()
    assert len(set(api.peers)) == 2
