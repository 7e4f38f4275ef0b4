"""The fake Responses API, driven by the real ``openai.AsyncOpenAI`` client.

Why: every upstream test of the relay trusts this fake, so these tests pin it to what the
SDK actually parses: event types and order, SSE framing of awkward text, HTTP error
mapping, mid-stream errors and the ways a stream can end early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import openai
import pytest
import pytest_asyncio
from openai import AsyncOpenAI
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

from testing.fake_responses_api import (
    DEFAULT_DELTAS,
    SAMPLE_ANSWER_DELTAS,
    SAMPLE_ANSWER_MARKDOWN,
    FakeResponsesAPI,
    FakeUsage,
    RunningFake,
    Scenario,
    run_fake_responses_api,
    split_into_deltas,
)

MODEL = "gpt-4.1-mini"
WAIT_SECONDS = 5.0


@pytest.fixture(scope="module")
def running_fake() -> Iterator[RunningFake]:
    with run_fake_responses_api() as running:
        yield running


@pytest.fixture
def fake(running_fake: RunningFake) -> FakeResponsesAPI:
    running_fake.api.reset()
    return running_fake.api


def make_client(base_url: str, api_key: str = "test") -> AsyncOpenAI:
    # Strict validation makes the SDK validate every event against its pydantic models,
    # instead of constructing them leniently, so a missing field fails the test.
    return AsyncOpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=WAIT_SECONDS,
        _strict_response_validation=True,
    )


@pytest_asyncio.fixture
async def client(running_fake: RunningFake) -> AsyncIterator[AsyncOpenAI]:
    async with make_client(running_fake.base_url) as sdk_client:
        yield sdk_client


async def stream_events(client: AsyncOpenAI) -> list[ResponseStreamEvent]:
    stream = await client.responses.create(model=MODEL, input="Who is she?", stream=True)
    async with stream:
        return [event async for event in stream]


def deltas_of(events: Sequence[ResponseStreamEvent]) -> list[str]:
    return [event.delta for event in events if isinstance(event, ResponseTextDeltaEvent)]


def assert_numbered_from_zero(events: Sequence[ResponseStreamEvent]) -> None:
    assert [event.sequence_number for event in events] == list(range(len(events)))


@pytest.mark.asyncio
async def test_full_stream_parses_into_typed_events_in_order(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    usage = FakeUsage(input_tokens=11, cached_tokens=3, output_tokens=7, reasoning_tokens=2)
    fake.enqueue(Scenario(deltas=["Hello", ", ", "world"], usage=usage))

    events = await stream_events(client)

    expected_types = [
        ResponseCreatedEvent,
        ResponseInProgressEvent,
        ResponseOutputItemAddedEvent,
        ResponseContentPartAddedEvent,
        ResponseTextDeltaEvent,
        ResponseTextDeltaEvent,
        ResponseTextDeltaEvent,
        ResponseTextDoneEvent,
        ResponseContentPartDoneEvent,
        ResponseOutputItemDoneEvent,
        ResponseCompletedEvent,
    ]
    assert [type(event) for event in events] == expected_types
    assert_numbered_from_zero(events)
    assert deltas_of(events) == ["Hello", ", ", "world"]

    created, completed = events[0], events[-1]
    assert isinstance(created, ResponseCreatedEvent)
    assert isinstance(completed, ResponseCompletedEvent)
    assert created.response.status == "in_progress"
    response = completed.response
    assert response.id == created.response.id
    assert response.status == "completed"
    assert response.model == MODEL
    assert response.output_text == "Hello, world"
    assert response.usage is not None
    assert response.usage.input_tokens == 11
    assert response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.output_tokens == 7
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert response.usage.total_tokens == 18

    item_ids = {
        event.item_id
        for event in events
        if isinstance(event, ResponseTextDeltaEvent | ResponseTextDoneEvent)
    }
    assert item_ids == {response.output[0].id}
    text_done = events[7]
    assert isinstance(text_done, ResponseTextDoneEvent)
    assert text_done.text == "Hello, world"


@pytest.mark.asyncio
async def test_completed_event_parses_with_the_lenient_default_client_too(
    fake: FakeResponsesAPI, running_fake: RunningFake
) -> None:
    async with AsyncOpenAI(base_url=running_fake.base_url, api_key="test", max_retries=0) as sdk:
        events = await stream_events(sdk)

    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.output_text == "".join(DEFAULT_DELTAS)
    # Re-validating the parsed event proves the JSON satisfies the model, not just construct().
    ResponseCompletedEvent.model_validate(completed.model_dump())


@pytest.mark.asyncio
async def test_awkward_deltas_arrive_exactly(fake: FakeResponsesAPI, client: AsyncOpenAI) -> None:
    awkward = [
        "첫 줄입니다.\n",
        "\n\n",
        "data: this line starts with data:",
        '\ndata: {"type": "response.completed"}\n\n',
        "event: error\n",
        ": looks like an SSE comment",
        "\r\n안녕하세요, 지원자에 대해 물어보세요 👋",
        "  trailing spaces  ",
        '"quotes" and \\backslashes\\ and \ttabs',
    ]
    fake.enqueue(Scenario(deltas=awkward))

    events = await stream_events(client)

    assert deltas_of(events) == awkward
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.output_text == "".join(awkward)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status_code", "exception_type", "error_type", "error_code"),
    [
        (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error", None),
    ],
)
async def test_http_errors_raise_the_sdk_exception(
    fake: FakeResponsesAPI,
    client: AsyncOpenAI,
    status_code: int,
    exception_type: type[openai.APIStatusError],
    error_type: str,
    error_code: str | None,
) -> None:
    fake.enqueue(Scenario(status_code=status_code, error_message="scripted failure"))

    with pytest.raises(exception_type) as raised:
        await client.responses.create(model=MODEL, input="hi", stream=True)

    error = raised.value
    assert error.status_code == status_code
    # The SDK unwraps OpenAI's ``{"error": {...}}`` body into ``body``, ``code`` and ``type``.
    assert error.body == {
        "message": "scripted failure",
        "type": error_type,
        "param": None,
        "code": error_code,
    }
    assert (error.code, error.type) == (error_code, error_type)
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    if status_code == 429:
        assert error.response.headers["retry-after"] == "1"


@pytest.mark.asyncio
async def test_error_flat_yields_a_response_error_event(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["partial"], terminal="error_flat", error_message="slow down"))

    events = await stream_events(client)

    error = events[-1]
    assert isinstance(error, ResponseErrorEvent)
    assert error.code == "rate_limit_exceeded"
    assert error.message == "slow down"
    assert error.param is None
    assert_numbered_from_zero(events)
    assert deltas_of(events) == ["partial"]


@pytest.mark.asyncio
async def test_error_nested_raises_api_error_mid_iteration(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["a", "b"], terminal="error_nested", error_message="boom"))
    received: list[ResponseStreamEvent] = []

    async def read_all() -> None:
        stream = await client.responses.create(model=MODEL, input="hi", stream=True)
        async with stream:
            async for event in stream:
                received.append(event)

    with pytest.raises(openai.APIError) as raised:
        await read_all()

    assert deltas_of(received) == ["a", "b"]
    assert raised.value.message == "boom"
    assert raised.value.code == "server_error"
    assert raised.value.type == "server_error"


@pytest.mark.asyncio
async def test_failed_yields_a_response_failed_event(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["x"], terminal="failed", error_message="model crashed"))

    events = await stream_events(client)

    failed = events[-1]
    assert isinstance(failed, ResponseFailedEvent)
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"
    assert failed.response.error.message == "model crashed"
    assert_numbered_from_zero(events)


@pytest.mark.asyncio
async def test_incomplete_yields_a_response_incomplete_event(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["cut", " off"], terminal="incomplete"))

    events = await stream_events(client)

    incomplete = events[-1]
    assert isinstance(incomplete, ResponseIncompleteEvent)
    assert incomplete.response.status == "incomplete"
    assert incomplete.response.incomplete_details is not None
    assert incomplete.response.incomplete_details.reason == "max_output_tokens"
    assert incomplete.response.output_text == "cut off"
    assert incomplete.response.usage is not None
    assert_numbered_from_zero(events)


@pytest.mark.asyncio
async def test_drop_ends_iteration_without_a_terminal_event(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["one", "two"], terminal="drop"))

    events = await stream_events(client)

    assert isinstance(events[-1], ResponseTextDeltaEvent)
    assert deltas_of(events) == ["one", "two"]
    assert await fake.wait_for_async(lambda: fake.finished_streams == 1, WAIT_SECONDS)
    assert fake.closed_by_client == 0


@pytest.mark.asyncio
async def test_stall_is_seen_as_closed_by_client_when_the_client_gives_up(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["waiting", " forever"], terminal="stall"))

    stream = await client.responses.create(model=MODEL, input="hi", stream=True)
    received: list[ResponseStreamEvent] = []
    async for event in stream:
        received.append(event)
        if deltas_of(received) == ["waiting", " forever"]:
            break
    assert fake.open_streams == 1
    await stream.close()

    assert await fake.wait_for_async(lambda: fake.closed_by_client == 1, WAIT_SECONDS)
    assert fake.open_streams == 0
    assert fake.finished_streams == 0


@pytest.mark.asyncio
async def test_stopping_the_server_releases_a_stalled_stream() -> None:
    with run_fake_responses_api() as running:
        running.api.enqueue(Scenario(deltas=["held"], terminal="stall"))
        sdk = make_client(running.base_url)
        stream = await sdk.responses.create(model=MODEL, input="hi", stream=True)
        first_events = [await stream.__anext__() for _ in range(5)]
        assert deltas_of(first_events) == ["held"]
    # The server has stopped: the held stream ended cleanly, with no terminal event.
    rest = [event async for event in stream]
    await sdk.close()

    assert rest == []
    assert running.api.finished_streams == 1
    assert running.api.closed_by_client == 0


@pytest.mark.asyncio
async def test_requests_are_recorded_with_body_and_authorization(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    stream = await client.responses.create(
        model=MODEL,
        instructions="Answer about the applicant.",
        input=[{"role": "user", "content": "경력은?"}],
        max_output_tokens=64,
        store=False,
        stream=True,
    )
    async with stream:
        events = [event async for event in stream]

    [recorded] = fake.requests
    assert recorded["method"] == "POST"
    assert recorded["path"] == "/v1/responses"
    assert recorded["authorization"] == "Bearer test"
    assert recorded["body"]["model"] == MODEL
    assert recorded["body"]["stream"] is True
    assert recorded["body"]["store"] is False
    assert recorded["body"]["input"] == [{"role": "user", "content": "경력은?"}]
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.instructions == "Answer about the applicant."
    assert completed.response.max_output_tokens == 64


@pytest.mark.asyncio
async def test_scenarios_are_used_in_order_then_the_default(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["first"]), Scenario(deltas=["second"]))

    answers = [deltas_of(await stream_events(client)) for _ in range(3)]

    assert answers == [["first"], ["second"], list(DEFAULT_DELTAS)]
    assert len(fake.requests) == 3


@pytest.mark.asyncio
async def test_without_stream_returns_the_response_json(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    fake.enqueue(Scenario(deltas=["plain ", "JSON"], usage=FakeUsage(input_tokens=5)))

    response = await client.responses.create(model=MODEL, input="hi")

    assert isinstance(response, Response)
    assert response.status == "completed"
    assert response.output_text == "plain JSON"
    assert response.usage is not None
    assert response.usage.total_tokens == 7


@pytest.mark.asyncio
async def test_path_without_v1_prefix_is_served(
    fake: FakeResponsesAPI, running_fake: RunningFake
) -> None:
    async with make_client(running_fake.origin) as sdk:
        events = await stream_events(sdk)

    assert isinstance(events[-1], ResponseCompletedEvent)
    assert fake.requests[0]["path"] == "/responses"


@pytest.mark.asyncio
async def test_required_api_key_rejects_other_keys() -> None:
    with run_fake_responses_api(FakeResponsesAPI(required_api_key="right")) as running:
        async with make_client(running.base_url, api_key="wrong") as wrong:
            with pytest.raises(openai.AuthenticationError):
                await wrong.responses.create(model=MODEL, input="hi", stream=True)
        async with make_client(running.base_url, api_key="right") as right:
            events = await stream_events(right)

    assert isinstance(events[-1], ResponseCompletedEvent)


def test_sample_answer_deltas_join_back_to_the_sample() -> None:
    assert "".join(SAMPLE_ANSWER_DELTAS) == SAMPLE_ANSWER_MARKDOWN
    assert any("\n" in delta for delta in SAMPLE_ANSWER_DELTAS)
    assert "".join(split_into_deltas("a\n\n  b  ", max_chars=1)) == "a\n\n  b  "


def test_scenario_rejects_a_bare_string_as_deltas() -> None:
    with pytest.raises(TypeError):
        Scenario(deltas="oops")


@pytest.mark.asyncio
async def test_paced_deltas_still_arrive_in_order(
    fake: FakeResponsesAPI, client: AsyncOpenAI
) -> None:
    paced = Scenario(
        deltas=["slow", "ly", " but", " surely"],
        delay_before_response=0.01,
        delay_before_first_delta=0.01,
        delay_between_deltas=0.01,
    )
    fake.enqueue(paced)

    events = await stream_events(client)

    assert deltas_of(events) == ["slow", "ly", " but", " surely"]
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert_numbered_from_zero(events)


async def test_embeddings_come_as_floats_or_base64_of_the_length_asked(
    fake: FakeResponsesAPI, running_fake: RunningFake
) -> None:
    texts = ["Has she managed people?", "팀을 이끈 경험이 있나요?"]
    # Lenient, as the service's client: the SDK's strict validation refuses the base64 string
    # its own default asks for.
    async with AsyncOpenAI(base_url=running_fake.base_url, api_key="t", max_retries=0) as client:
        floats = await client.embeddings.create(model="m", input=texts, encoding_format="float")
        # The SDK's default: base64 asked for, decoded back into floats.
        decoded = await client.embeddings.create(model="m", input=texts)
        short = await client.embeddings.create(model="m", input=texts, dimensions=8)

    for got, sent in zip(decoded.data, floats.data, strict=True):
        assert got.embedding == pytest.approx(sent.embedding, abs=1e-6)
    assert [len(item.embedding) for item in floats.data] == [fake.embedding_dimensions] * 2
    assert [len(item.embedding) for item in short.data] == [8, 8]
    assert floats.data[0].embedding != floats.data[1].embedding


@pytest.mark.parametrize("include_obfuscation", [True, False, None])
async def test_deltas_are_padded_unless_the_request_turns_it_off(
    client: AsyncOpenAI, include_obfuscation: bool | None
) -> None:
    options = {} if include_obfuscation is None else {"include_obfuscation": include_obfuscation}
    stream = await client.responses.create(
        model="gpt-4.1-mini", input="Hi", stream=True, stream_options=options
    )
    events = [event async for event in stream]

    deltas = [e for e in events if isinstance(e, ResponseTextDeltaEvent)]
    padded = [(e.model_extra or {}).get("obfuscation") for e in deltas]
    if include_obfuscation is False:
        assert padded == [None] * len(deltas)
    else:
        assert all(isinstance(padding, str) for padding in padded)
        assert len(set(padded)) > 1  # lengths vary, as OpenAI's random characters do
