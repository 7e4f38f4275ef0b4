"""The service's OpenAI client builds streamed Responses events as the SDK does, faster.

Each stream is read twice from the fake Responses API (the real wire format): through the
SDK's own ``AsyncOpenAI`` and through ``OpenAIClient``; the events must be equal, of the same
classes, down to the nested response and its output items.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

import pytest
from openai import AsyncOpenAI
from openai import _models as openai_models
from openai.types.responses import ResponseStreamEvent

from infrastructure.openai_client import STREAM_EVENT_TYPES, OpenAIClient
from testing.fake_responses_api import RunningFake, Scenario, run_fake_responses_api


@pytest.fixture
def fake() -> Iterator[RunningFake]:
    with run_fake_responses_api() as running:
        yield running


async def streamed(client: AsyncOpenAI) -> list[Any]:
    async with client:
        stream = await client.responses.create(model="gpt-4.1-mini", input="Hi", stream=True)
        return [event async for event in stream]


# What differs between two responses of the fake to the same request.
PER_RESPONSE = frozenset({"id", "item_id", "call_id", "created_at", "completed_at"})


def comparable(value: Any) -> Any:
    """``value`` with its classes named and what is particular to one response left out."""
    if hasattr(value, "__pydantic_fields__"):
        return (
            type(value).__name__,
            comparable(dict(value)),
            comparable(value.model_extra),
            sorted(value.model_fields_set - PER_RESPONSE),
        )
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in PER_RESPONSE}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return (type(value).__name__, value)


def both(fake: RunningFake) -> tuple[AsyncOpenAI, OpenAIClient]:
    options: dict[str, Any] = {"api_key": "sk-test", "base_url": fake.base_url, "max_retries": 0}
    return AsyncOpenAI(**options), OpenAIClient(**options)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario(deltas=("첫 줄\n\n", "- second", " line")),
        Scenario(terminal="incomplete"),
        Scenario(terminal="failed"),
        Scenario(terminal="error_flat"),
        Scenario(function_call=("search_profile", {"query": "Kubernetes"})),
    ],
    ids=["completed", "incomplete", "failed", "error", "function-call"],
)
async def test_streamed_events_equal_the_sdks_own(fake: RunningFake, scenario: Scenario) -> None:
    sdk, ours = both(fake)
    fake.api.enqueue(scenario, scenario)

    expected, events = await streamed(sdk), await streamed(ours)

    assert [comparable(event) for event in events] == [comparable(event) for event in expected]
    assert len(events) >= 3


TEXT_DELTA = {
    "type": "response.output_text.delta",
    "delta": "Hi",
    "item_id": "msg_1",
    "output_index": 0,
    "content_index": 0,
    "sequence_number": 5,
    "logprobs": [],
}


async def test_an_event_type_the_sdk_does_not_know_goes_the_sdks_way() -> None:
    client = OpenAIClient(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    unknown = {"type": "response.something_new", "sequence_number": 4}
    known = TEXT_DELTA | {"logprobs": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]}

    built = [
        client._process_response_data(data=data, cast_to=ResponseStreamEvent, response=None)  # type: ignore[arg-type]
        for data in (unknown, known)
    ]

    assert built[0] is not None  # as the SDK builds it: the first member that takes it
    assert type(built[1]) is STREAM_EVENT_TYPES["response.output_text.delta"]
    assert built[1].delta == "Hi"
    assert type(built[1].logprobs[0]).__name__ == "Logprob"  # nested models built too


@pytest.mark.parametrize(
    "changed",
    [
        {},
        {"sequence_number": "5"},  # validation converts it to 5
        {"output_index": True},  # a flag where an integer belongs
        {"delta": None},  # validation refuses it
        {"obfuscation": "kQ"},  # an extra key, kept
    ],
    ids=["as-sent", "number-as-text", "flag-as-number", "none", "extra"],
)
def test_a_delta_is_what_the_sdk_makes_of_it_whatever_its_values(changed: dict[str, Any]) -> None:
    options: dict[str, Any] = {"api_key": "sk-test", "base_url": "http://127.0.0.1:9/v1"}
    data = TEXT_DELTA | changed

    def built(client: AsyncOpenAI) -> Any:
        try:
            return client._process_response_data(
                data=dict(data),
                cast_to=ResponseStreamEvent,  # type: ignore[arg-type]
                response=None,  # type: ignore[arg-type]
            )
        except Exception as error:  # as the SDK's own client fails, so must this one
            return type(error)

    assert comparable(built(OpenAIClient(**options))) == comparable(built(AsyncOpenAI(**options)))


async def test_no_text_delta_is_validated_against_the_whole_union(
    fake: RunningFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    union = get_args(ResponseStreamEvent)[0]
    tried: list[str] = []
    validate = openai_models.validate_type

    def counting(*, type_: Any, value: Any) -> object:
        if type_ is union:
            tried.append(value["type"])
        return validate(type_=type_, value=value)

    monkeypatch.setattr(openai_models, "validate_type", counting)
    sdk, ours = both(fake)

    assert await streamed(ours)
    assert "response.created" in tried  # events with models inside: the SDK's way
    assert "response.output_text.delta" not in tried
    tried.clear()
    assert await streamed(sdk)
    assert "response.output_text.delta" in tried  # what the SDK's own client does


async def test_the_host_is_not_described_to_the_upstream(fake: RunningFake) -> None:
    """The SDK's platform headers (OS, architecture, Python) are not sent, whichever server
    OPENAI_BASE_URL names; the request's other headers are the SDK's."""
    sdk, ours = both(fake)
    await streamed(sdk)
    await streamed(ours)
    by_sdk, by_ours = (request["headers"] for request in fake.api.requests)
    platform = {
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-os",
        "x-stainless-arch",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
    }
    assert platform <= by_sdk.keys(), "what the SDK itself sends"
    assert by_ours.keys() == by_sdk.keys() - platform
    assert by_ours["authorization"] == "Bearer sk-test"


async def test_each_path_goes_to_the_base_url_of_the_moment() -> None:
    """URLs are prepared once per path, and again when the base URL changes."""
    with run_fake_responses_api() as first, run_fake_responses_api() as second:
        client = OpenAIClient(api_key="sk-test", base_url=first.base_url, max_retries=0)
        async with client:
            for _ in range(2):
                stream = await client.responses.create(model="m", input="Hi", stream=True)
                [event async for event in stream]
            await client.embeddings.create(model="e", input=["Hi"])
            client.base_url = second.base_url
            stream = await client.responses.create(model="m", input="Hi", stream=True)
            [event async for event in stream]
        assert [request["path"] for request in first.api.requests] == [
            "/v1/responses",
            "/v1/responses",
            "/v1/embeddings",
        ]
        assert [request["path"] for request in second.api.requests] == ["/v1/responses"]
