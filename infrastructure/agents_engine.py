"""The OpenAI Agents SDK adapter: a triage agent hands each question to a specialist.

``Runner.run_streamed`` runs a triage agent that hands the conversation off to one of three
specialists (career and experience; projects and skills; logistics), which look facts up with
the ``search_profile`` tool: the chat's own search (the ``ProfileSearch`` port), so the tool
finds the same passages and declines the same topics. Every agent gets the server's
instructions (``domain.policy.INSTRUCTIONS``) plus a line about its role, and every text the
agents read (roles, the tool's description, the guardrail's prompt) comes from
``domain.policy`` too; the retrieved passages and the stored conversation are its input, as
for the Responses engine.
The SDK's stream is relayed as answer events: text deltas as ``TextDelta``, tool calls and
handoffs as ``AgentStep``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, cast

import anyio
import httpx2
import openai
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrail,
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelSettings,
    RunConfig,
    RunContextWrapper,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.exceptions import AgentsException, ModelTimeoutError
from agents.items import TResponseInputItem
from agents.mcp import MCPServer
from agents.models.interface import ModelProvider
from agents.result import RunResultStreaming
from agents.retry import (
    ModelRetryBackoffSettings,
    ModelRetrySettings,
    RetryPolicyContext,
    retry_policies,
)
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent, StreamEvent

from common.deadline import RollingDeadline
from common.lifecycle import Lifecycle
from domain.errors import UPSTREAM_MESSAGES, ErrorCode
from domain.guardrails import Concern, LeakScreen, check_question, refusal
from domain.models import (
    AgentRoute,
    AgentStep,
    AnswerDone,
    AnswerEvent,
    AnswerFailed,
    AnswerRequest,
    TextDelta,
    Usage,
    add_usage,
)
from domain.policy import (
    GUARDRAIL_INSTRUCTIONS,
    SEARCH_QUERY_DESCRIPTION,
    SEARCH_TOOL_DESCRIPTION,
    SPECIALISTS,
    TRIAGE_INSTRUCTIONS,
    Language,
    QuestionVerdict,
    detect_language,
    guardrail_input,
    render_search_results,
    specialist_description,
    specialist_instructions,
)
from domain.ports import ProfileSearch
from domain.routing import direct_specialist
from infrastructure.openai_engine import (
    RETRYABLE,
    UPSTREAM_CLOSE_SECONDS,
    UpstreamPolicy,
    UpstreamStop,
    bounded_by_drain,
    build_input,
    within_idle_timeout,
)
from infrastructure.responses_events import classify, failure, map_event

logger = logging.getLogger(__name__)

GuardrailMode = Literal["heuristic", "model", "off"]

MAX_TURNS = 8
"""Model calls in one answer: triage, a few searches, the answer."""

SEARCH_LIMIT = 4
GUARDRAIL_MAX_TOKENS = 64

OUT_OF_TURNS = AnswerFailed(
    ErrorCode.UPSTREAM_FAILED,
    "The answer took too many steps to put together. Please ask a more specific question.",
)


@dataclass(frozen=True, slots=True)
class AgentRun:
    """What the tools and guardrails of one run need (the SDK's run context)."""

    request: AnswerRequest
    search: ProfileSearch


async def search_profile(
    ctx: RunContextWrapper[AgentRun], query: Annotated[str, SEARCH_QUERY_DESCRIPTION]
) -> str:
    """The ``search_profile`` tool; the model reads ``SEARCH_TOOL_DESCRIPTION``."""
    run = ctx.context
    found = await run.search.search(
        query, limit=SEARCH_LIMIT, language=detect_language(run.request.question)
    )
    if found.decline is not None:
        return found.decline.text
    return render_search_results(found.passages, run.request.grounding)


SEARCH_PROFILE = function_tool(
    search_profile,
    name_override="search_profile",
    description_override=SEARCH_TOOL_DESCRIPTION,
    use_docstring_info=False,
)


def build_agents(input_guardrails: list[InputGuardrail[AgentRun]]) -> Agent[AgentRun]:
    """The triage agent, with its specialists as handoffs. No model is named: the run's
    ``RunConfig.model`` (the request's model) applies to every agent."""
    specialists = [
        Agent[AgentRun](
            name=name,
            handoff_description=specialist_description(topics),
            instructions=specialist_instructions(title, topics),
            tools=[SEARCH_PROFILE],
        )
        for name, title, topics in SPECIALISTS
    ]
    return Agent[AgentRun](
        name="triage",
        instructions=TRIAGE_INSTRUCTIONS,
        handoffs=list(specialists),
        input_guardrails=input_guardrails,
    )


def agent_step(event: RunItemStreamEvent) -> AgentStep | None:
    """The step to show for a run item: a tool call (by tool) or a handoff (by specialist,
    which only the triage model makes)."""
    if event.name == "tool_called":
        name = getattr(event.item, "tool_name", None)
        return AgentStep("tool_call", name) if isinstance(name, str) and name else None
    if event.name == "handoff_occured":  # sic: the SDK's spelling
        target = getattr(event.item, "target_agent", None)
        return AgentStep("handoff", target.name, "triage") if target is not None else None
    return None


def from_screen(text_sent: bool, language: Language) -> TextDelta:
    """The refusal that replaces an answer the leak screen stopped."""
    logger.warning("an answer began to quote the instructions; replaced with a refusal")
    separator = "\n\n" if text_sent else ""
    return TextDelta(separator + refusal("instructions", language))


def _usage(result: RunResultStreaming) -> Usage | None:
    usage = result.context_wrapper.usage
    if not usage.requests:
        return None
    return Usage(usage.input_tokens, usage.output_tokens, usage.total_tokens)


def _retry_settings(policy: UpstreamPolicy) -> ModelRetrySettings:
    """Retries of one model call, by the SDK's runner, which never retries a call whose output
    was already streamed: 429, 5xx and connection errors, honouring ``Retry-After`` unless the
    provider asks for a longer wait than ``max_retry_after`` (then the answer fails at once)."""

    def wait_is_acceptable(context: RetryPolicyContext) -> bool:
        asked = context.normalized.retry_after
        return asked is None or asked <= policy.max_retry_after

    return ModelRetrySettings(
        max_retries=policy.max_retries,
        backoff=ModelRetryBackoffSettings(
            initial_delay=policy.backoff_initial,
            max_delay=policy.backoff_max,
            multiplier=2.0,
            jitter=True,
        ),
        policy=retry_policies.all(
            wait_is_acceptable,
            retry_policies.any(
                retry_policies.provider_suggested(),
                retry_policies.network_error(),
                retry_policies.http_status((429, 500, 502, 503, 504)),
            ),
        ),
    )


@dataclass(slots=True)
class _Outcome:
    retryable: bool = False
    """The run failed before any text, in a way another run may not."""


_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class AgentsEngine:
    """Answers with a triage agent and three specialists (OpenAI Agents SDK), streamed.

    Guardrails (``heuristic``, ``model`` or ``off``): an input guardrail on the triage agent
    refuses prompt injection and off-topic requests before any model call, with a polite
    answer rather than an error; and the answer is screened as it streams, so that it never
    quotes the instructions (``domain.guardrails.LeakScreen``). Every wait for the next SDK
    event is bounded by the idle timeout, the answer's total timeout and, while the server
    drains for shutdown, the time left. Closing the stream cancels the run.
    """

    mode = "agents"

    def __init__(
        self,
        search: ProfileSearch,
        provider: ModelProvider,
        *,
        max_output_tokens: int,
        guardrails: GuardrailMode = "heuristic",
        guardrail_model: str | None = None,
        policy: UpstreamPolicy | None = None,
        lifecycle: Lifecycle | None = None,
        tracing: bool = False,
        max_turns: int = MAX_TURNS,
        mcp_servers: Callable[[], Sequence[MCPServer]] = lambda: (),
        direct_routing: bool = True,
    ) -> None:
        """``guardrail_model`` is the model the ``model`` guardrail asks (the default model;
        the request's when ``None``). ``mcp_servers`` is asked on each run, so servers that
        connect later are given to the specialists without rebuilding the agents. With
        ``direct_routing``, a question whose specialist is clear (``domain.routing``) starts
        at that specialist, without the triage model's call."""
        self._search = search
        self._provider = provider
        self._guardrails = guardrails
        self._guardrail_model = guardrail_model
        self._policy = policy = policy or UpstreamPolicy()
        self._lifecycle = lifecycle
        self._tracing = tracing
        self._max_turns = max_turns
        self._mcp_servers = mcp_servers
        self._direct_routing = direct_routing
        self._run_configs: dict[str, RunConfig] = {}  # one per allowed model
        # Traces go to OpenAI only when asked for (OPENAI_AGENTS_TRACING); the SDK's switch
        # is process-wide, RunConfig.tracing_disabled below is per run.
        set_tracing_disabled(not tracing)
        self._model_settings = ModelSettings(
            max_tokens=max_output_tokens,
            store=False,
            retry=_retry_settings(policy),
        )
        screens = [] if guardrails == "off" else [self._question_guardrail()]
        self._triage = build_agents(screens)
        # A run that starts at a specialist screens the question there (the SDK runs the
        # starting agent's input guardrails).
        self._specialists = {
            agent.name: agent.clone(input_guardrails=screens)
            for agent in (cast(Agent[AgentRun], handoff) for handoff in self._triage.handoffs)
        }
        self._guard = Agent[None](
            name="question_guardrail",
            instructions=GUARDRAIL_INSTRUCTIONS,
            output_type=QuestionVerdict,
        )

    def model_for(self, requested: str) -> str:
        return requested

    async def stream_answer(self, request: AnswerRequest) -> AsyncGenerator[AnswerEvent, None]:
        """The answer of one run; with the Responses engine's retry rules.

        Until the first text delta, a failure that may pass is tried again: the SDK retries a
        model call that fails before it streams anything (429, 5xx, connection errors); this
        loop starts the run again when a call's stream breaks, ends early or stalls, or the
        provider reports the response failed (``UPSTREAM_MAX_RETRIES`` in all, with backoff).
        Once text was sent, a failure ends the answer. Every attempt's tokens are counted.
        """
        deadline = anyio.current_time() + self._policy.total_timeout
        spent: Usage | None = None
        attempt = 0
        while True:
            outcome = _Outcome()
            async with aclosing(self._run_once(request, deadline, outcome)) as events:
                async for event in events:
                    if isinstance(event, AnswerDone | AnswerFailed):
                        spent = add_usage(spent, event.usage)
                        if (
                            isinstance(event, AnswerFailed)
                            and outcome.retryable
                            and attempt < self._policy.max_retries
                            and anyio.current_time() < deadline
                        ):
                            break
                        yield replace(event, usage=spent)
                        return
                    yield event
                else:  # pragma: no cover: _run_once always ends with a terminal event
                    return
            attempt += 1
            wait = min(self._policy.backoff_initial * 2 ** (attempt - 1), self._policy.backoff_max)
            wait *= 0.5 + random.random() / 2  # noqa: S311 (jitter, not a secret)
            logger.warning(
                "agents attempt %d failed (%s) before any text; retrying in %.2fs",
                attempt,
                event.code.value,
                wait,
            )
            await anyio.sleep(min(wait, max(deadline - anyio.current_time(), 0.0)))

    async def _run_once(
        self, request: AnswerRequest, deadline: float, outcome: _Outcome
    ) -> AsyncGenerator[AnswerEvent, None]:
        """One run of the agents, to its terminal event; ``outcome`` says if a failure may
        be tried again."""
        language = detect_language(request.question)
        screen = LeakScreen() if self._guardrails != "off" else None
        specialist = (
            direct_specialist(request.question, request.grounding) if self._direct_routing else None
        )
        starting = self._starting_agent(specialist)
        route = AgentRoute(starting.name, "direct" if specialist else "triage")
        # Shown once the run is under way: a question the guardrail refuses reached no one.
        routed: AgentStep | None = (
            AgentStep("handoff", specialist, "direct") if specialist else None
        )
        result = Runner.run_streamed(
            starting,
            input=build_input(request),
            context=AgentRun(request, self._search),
            max_turns=self._max_turns,
            run_config=self._run_config(request.model),
        )
        events = cast(AsyncGenerator[StreamEvent, None], result.stream_events())
        # One timer bounds every wait of the run, and the drain can shorten it.
        reads = RollingDeadline()
        text_sent = False
        # How the last upstream response ended, when the SDK raises for it without the code.
        upstream_end: AnswerFailed | AnswerDone | None = None
        # Whether a model response is streaming (begun, not yet ended): a failure now is a
        # broken stream, which the SDK does not retry.
        streaming = False
        responses = 0  # model responses ended so far
        text_in: int | None = None  # the response the last text came from
        with bounded_by_drain(self._lifecycle, reads):
            try:
                while True:
                    try:
                        event = await self._next_event(events, deadline, reads)
                    except InputGuardrailTripwireTriggered as trip:
                        concern = cast(Concern, trip.guardrail_result.output.output_info)
                        yield TextDelta(refusal(concern, language))
                        ending: AnswerEvent = AnswerDone("stop", _usage(result))
                        break
                    except UpstreamStop as stop:
                        ending = replace(stop.event, usage=_usage(result))
                        outcome.retryable = stop.retryable and not text_sent
                        break
                    except Exception as error:
                        ending = self._ending(
                            error, upstream_end, text_sent, streaming, _usage(result)
                        )
                        outcome.retryable = (
                            not text_sent
                            and isinstance(ending, AnswerFailed)
                            and ending.code in RETRYABLE
                            and (streaming or isinstance(upstream_end, AnswerFailed))
                            and not isinstance(error, MaxTurnsExceeded)
                        )
                        break
                    if event is None:
                        ending = AnswerDone("stop", _usage(result))
                        break
                    if routed is not None and isinstance(
                        event, RunItemStreamEvent | RawResponsesStreamEvent
                    ):
                        yield routed
                        routed = None
                    if isinstance(event, RunItemStreamEvent):
                        step = agent_step(event)
                        if step is not None:
                            if step.kind == "handoff":
                                route = replace(route, agent=step.name)
                            yield step
                        continue
                    if not isinstance(event, RawResponsesStreamEvent):
                        continue
                    mapped = map_event(event.data)
                    if not isinstance(mapped, TextDelta):
                        ended = mapped is not None or event.data.type in _RESPONSE_ENDS
                        streaming = not ended
                        if ended:
                            responses += 1
                        if isinstance(mapped, AnswerFailed) or (
                            isinstance(mapped, AnswerDone) and mapped.finish_reason != "stop"
                        ):
                            upstream_end = mapped
                        continue
                    streaming = True
                    text = mapped.text
                    if text_in is not None and text_in != responses and text:
                        # Another agent's text (the triage wrote before it handed off): a new
                        # paragraph, not the end of the last sentence.
                        text = "\n\n" + text
                    text_in = responses
                    if screen is not None:
                        text = screen.feed(text)
                        if screen.tripped:
                            ending = AnswerDone("stop", _usage(result))
                            break
                    if text:
                        text_sent = True
                        yield TextDelta(text)
                # The words the screen held back belong to the answer, however it ended.
                if screen is not None and not screen.tripped and (rest := screen.flush()):
                    text_sent = True
                    yield TextDelta(rest)
                if screen is not None and screen.tripped:
                    yield from_screen(text_sent, language)
                if isinstance(ending, AnswerDone | AnswerFailed):
                    ending = replace(ending, route=route)
                yield ending
            finally:
                reads.close()
                await _stop_run(result, events)

    def _run_config(self, model: str) -> RunConfig:
        """The run's configuration, built once per model: building one resolves type hints
        (about 1 ms of CPU, profiled), and nothing in it changes between runs."""
        config = self._run_configs.get(model)
        if config is None:
            config = self._run_configs[model] = RunConfig(
                model=model,
                model_provider=self._provider,
                model_settings=self._model_settings,
                tracing_disabled=not self._tracing,
                trace_include_sensitive_data=False,
                workflow_name="Ask the Applicant",
            )
        return config

    def _starting_agent(self, specialist: str | None) -> Agent[AgentRun]:
        """The triage agent, or ``specialist`` when the routing rule chose it; with the tools
        of the MCP servers connected now."""
        servers = list(self._mcp_servers())
        if specialist is not None:
            agent = self._specialists[specialist]
            return agent.clone(**_with_tools_of(servers)) if servers else agent
        if not servers:
            return self._triage
        specialists = [
            cast(Agent[AgentRun], specialist).clone(**_with_tools_of(servers))
            for specialist in self._triage.handoffs
        ]
        return self._triage.clone(handoffs=specialists)

    async def _next_event(
        self, events: AsyncGenerator[StreamEvent, None], deadline: float, reads: RollingDeadline
    ) -> StreamEvent | None:
        """The next SDK event, or ``None`` when the run is over; a failed run raises its error.
        The wait is bounded as the Responses engine's, by the run's one timer (not a cancel
        scope per event: a run waits once per delta)."""
        try:
            return await within_idle_timeout(
                reads,
                anext(events),
                idle_timeout=self._policy.idle_timeout,
                deadline=deadline,
                lifecycle=self._lifecycle,
            )
        except StopAsyncIteration:
            return None

    @staticmethod
    def _ending(
        error: Exception,
        upstream_end: AnswerFailed | AnswerDone | None,
        text_sent: bool,
        streaming: bool,
        usage: Usage | None,
    ) -> AnswerEvent:
        """The terminal event for a run that raised, with the Responses engine's codes for the
        same faults; the error's text is never shown or logged."""
        if isinstance(error, MaxTurnsExceeded):
            logger.warning("agents ran out of turns")
            return replace(OUT_OF_TURNS, usage=usage)
        if isinstance(error, ModelBehaviorError) and upstream_end is not None:
            # The SDK raises for response.failed/incomplete and error events; their codes
            # were seen in the raw events.
            return replace(upstream_end, usage=usage)
        if isinstance(error, ModelBehaviorError) and streaming:
            # The SDK's "no final response": the stream ended before its last event.
            logger.warning("upstream stream ended without a terminal event")
            return failure(ErrorCode.UPSTREAM_INTERRUPTED, usage)
        if isinstance(error, httpx2.TimeoutException):
            logger.warning("upstream stream broke: timeout")
            return failure(ErrorCode.UPSTREAM_TIMEOUT, usage)
        if isinstance(error, httpx2.TransportError | httpx2.StreamError):
            logger.warning("upstream stream broke: %s", type(error).__name__)
            return failure(ErrorCode.UPSTREAM_INTERRUPTED, usage)
        if isinstance(error, openai.OpenAIError):
            status = getattr(error, "status_code", None)
            logger.warning("upstream request failed: %s status=%s", type(error).__name__, status)
            broke = isinstance(error, openai.APIConnectionError) and not isinstance(
                error, openai.APITimeoutError
            )
            interrupted = broke and (text_sent or streaming)
            code = ErrorCode.UPSTREAM_INTERRUPTED if interrupted else classify(error)
            return failure(code, usage)
        if isinstance(error, ModelTimeoutError):
            logger.warning("agents model call timed out")
            return failure(ErrorCode.UPSTREAM_TIMEOUT, usage)
        if isinstance(error, AgentsException):
            logger.warning("agents run failed: %s", type(error).__name__)
            return failure(ErrorCode.UPSTREAM_FAILED, usage)
        logger.error("agents engine failed: %s", type(error).__name__)
        return AnswerFailed(
            ErrorCode.INTERNAL_ERROR, UPSTREAM_MESSAGES[ErrorCode.INTERNAL_ERROR], usage
        )

    def _question_guardrail(self) -> InputGuardrail[AgentRun]:
        # Blocking (not in parallel with the triage agent): a refused question costs no
        # model call beyond the guardrail's own.
        return InputGuardrail[AgentRun](
            guardrail_function=self._screen_question,
            name="recruiter_question",
            run_in_parallel=False,
        )

    async def _screen_question(
        self,
        ctx: RunContextWrapper[AgentRun],
        agent: Agent[Any],
        input: str | list[TResponseInputItem],
    ) -> GuardrailFunctionOutput:
        """Refuse injection and off-topic requests: the cheap rules first; with ``model``,
        then the guardrail model for what the rules let through."""
        request = ctx.context.request
        concern = check_question(request.question)
        if concern is None and self._guardrails == "model":
            concern = await self._ask_guardrail_model(ctx, request)
        if concern is not None:
            logger.info("question refused by the input guardrail (%s)", concern)
        return GuardrailFunctionOutput(output_info=concern, tripwire_triggered=concern is not None)

    async def _ask_guardrail_model(
        self, ctx: RunContextWrapper[AgentRun], request: AnswerRequest
    ) -> Concern | None:
        result = await Runner.run(
            self._guard,
            [{"role": "user", "content": guardrail_input(request.question)}],
            max_turns=1,
            run_config=RunConfig(
                model=self._guardrail_model or request.model,
                model_provider=self._provider,
                model_settings=ModelSettings(max_tokens=GUARDRAIL_MAX_TOKENS, store=False),
                tracing_disabled=not self._tracing,
                trace_include_sensitive_data=False,
                workflow_name="Ask the Applicant: question guardrail",
            ),
        )
        ctx.usage.add(result.context_wrapper.usage)  # counted with the answer
        verdict = result.final_output_as(QuestionVerdict)
        if verdict.is_injection:
            return "injection"
        if verdict.is_off_topic:
            return "off_topic"
        return None


def _with_tools_of(servers: list[MCPServer]) -> dict[str, Any]:
    # Every outside tool under its server's name (mcp_<server>__<tool>): two servers that
    # offer the same tool must not break the run (the SDK refuses duplicate names).
    return {"mcp_servers": servers, "mcp_config": {"include_server_in_tool_names": True}}


async def _stop_run(result: RunResultStreaming, events: AsyncGenerator[StreamEvent, None]) -> None:
    """Cancel the run (the client left, or the answer ended early) and close its stream, even
    while the calling task is being cancelled."""
    if not result.is_complete:
        result.cancel()
    with anyio.CancelScope(shield=True), anyio.move_on_after(UPSTREAM_CLOSE_SECONDS):
        try:
            await events.aclose()
        except Exception as error:
            # The run's own failure, already reported (or moot: nobody is listening).
            logger.debug("closing the agents stream: %s", type(error).__name__)
