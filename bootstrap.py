"""The composition root: the one place that turns ``Settings`` into wired adapters.

Tests pass fakes through the same door (``knowledge=``, ``engine=``), so what they exercise
is the wiring the service runs with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from api.app import build_app
from api.container import Container
from application.ask import AskApplicant
from application.resume import ResumableAnswers
from application.review import ReviewConversations
from application.search import SearchProfile
from application.spool import SpooledAnswers
from common.lifecycle import Lifecycle
from domain.disclosure import DisclosurePolicy
from domain.ports import (
    AnswerEngine,
    AnswerLog,
    AnswerSpool,
    ConversationRepository,
    KnowledgeIndex,
    ProfileSearch,
    SemanticSearch,
    TokenBudget,
)
from infrastructure.answer_log import MemoryAnswerLog
from infrastructure.answer_spool import SqliteAnswerSpool
from infrastructure.budget import MemoryTokenBudget
from infrastructure.conversation_store import SqlConversationRepository
from infrastructure.database import MIGRATION_TIMEOUT_SECONDS, create_engine, migrate
from infrastructure.disclosure_file import PolicyFileError, load_disclosure_policy
from infrastructure.knowledge_live import LiveKnowledgeIndex
from infrastructure.offline_engine import OfflineEngine
from infrastructure.rate_limit import build_rate_limiter, redis_breaker
from infrastructure.redis_breaker import RedisBreaker
from settings import Settings

# The optional adapters are imported where their setting selects them, so a service that
# answers offline never pays for the OpenAI SDK, the Agents SDK, the MCP client or Redis
# (docs/performance.md, "Start-up").
if TYPE_CHECKING:
    from agents.mcp import MCPServer
    from openai import AsyncOpenAI

    from infrastructure.mcp_client import McpToolbox
    from infrastructure.semantic import EmbeddingSearch

logger = logging.getLogger(__name__)


PURGE_INTERVAL_SECONDS = 3600.0


def create_app(
    settings: Settings,
    *,
    knowledge: KnowledgeIndex | None = None,
    engine: AnswerEngine | None = None,
    conversations: ConversationRepository | None = None,
    spool: AnswerSpool | None = None,
    answer_log: AnswerLog | None = None,
) -> FastAPI:
    """The app for ``settings``; the keyword arguments replace the configured adapters."""

    def open_container(lifecycle: Lifecycle) -> AbstractAsyncContextManager[Container]:
        return bootstrap(
            settings,
            knowledge=knowledge,
            engine=engine,
            conversations=conversations,
            spool=spool,
            lifecycle=lifecycle,
            answer_log=answer_log,
        )

    return build_app(settings, open_container)


def build_openai_client(settings: Settings) -> AsyncOpenAI:
    import httpx2
    from openai import DefaultAioHttpClient

    from infrastructure.openai_client import OpenAIClient

    # A server reached only through OPENAI_BASE_URL may need no key; the SDK insists on one.
    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    timeout = httpx2.Timeout(
        connect=settings.upstream_connect_timeout_seconds,
        # A backstop: the engine ends a silent stream after the idle timeout itself.
        read=settings.upstream_idle_timeout_seconds + 5,
        write=settings.upstream_connect_timeout_seconds,
        pool=settings.upstream_connect_timeout_seconds,
    )
    return OpenAIClient(
        api_key=api_key,
        base_url=settings.openai_base_url,
        max_retries=0,  # ResponsesEngine retries, and only before any text was sent
        timeout=timeout,
        # The SDK's aiohttp transport: it reads a streamed body at about half the CPU per
        # event of the default one (docs/performance.md), and it is the SDK's own option.
        http_client=DefaultAioHttpClient(
            timeout=timeout,
            # Each streaming answer holds a connection.
            limits=httpx2.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=100,
            ),
        ),
    )


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    knowledge: KnowledgeIndex | None = None,
    engine: AnswerEngine | None = None,
    conversations: ConversationRepository | None = None,
    spool: AnswerSpool | None = None,
    lifecycle: Lifecycle | None = None,
    answer_log: AnswerLog | None = None,
) -> AsyncIterator[Container]:
    """Build every adapter, yield them wired, and close what they opened.

    The answer spool (ANSWER_SPOOL) comes with the SQL store: with ``conversations`` given
    (a test's store in memory) there is none unless ``spool`` is given too.
    """
    lifecycle = lifecycle or Lifecycle(settings.shutdown_grace_seconds)
    async with AsyncExitStack() as stack:
        if conversations is None:
            if settings.migrate_on_start:
                await _migrate(settings)
            database = create_engine(
                settings.database_url, timeout=settings.database_timeout_seconds
            )
            stack.push_async_callback(database.dispose)
            store = SqlConversationRepository(
                database,
                # A terminal event waits for its answer's write; past this, the spool takes it.
                finish_timeout=2 * settings.database_timeout_seconds,
                database_timeout=settings.database_timeout_seconds,
            )
            stack.push_async_callback(store.close)  # before the engine's dispose
            conversations = store
            if spool is None:
                spool = _answer_spool(settings, stack)
        spooled = SpooledAnswers(conversations, spool) if spool is not None else None
        if spooled is not None:
            # Written back at start-up, and after each answer the store could not take.
            _run_in_background(stack, spooled.write_back_continually(), "write-back-answers")
        if knowledge is None:
            knowledge = await LiveKnowledgeIndex.open(settings.knowledge_dir)
            logger.info(
                "loaded %d passages from %s (%d files skipped)",
                len(knowledge.passages),
                settings.knowledge_dir,
                len(knowledge.report.skipped),
            )
        live_knowledge = knowledge if isinstance(knowledge, LiveKnowledgeIndex) else None
        if live_knowledge is not None and settings.knowledge_watch:
            await stack.enter_async_context(live_knowledge.watching())
        # Outside MCP servers for the agents' tools; one that cannot connect is skipped.
        toolbox = await _mcp_toolbox(settings, stack)
        mcp_servers = toolbox.connected if toolbox is not None else _no_mcp_servers
        # The engines and the use case get the live index, so they see every reload.
        offline = OfflineEngine(knowledge)
        client: AsyncOpenAI | None = None
        if settings.resolved_engine in ("responses", "agents"):
            client = build_openai_client(settings)
            stack.push_async_callback(client.close)
        semantic = _semantic_search(settings, client, knowledge, stack)
        search = SearchProfile(
            knowledge, semantic=semantic, disclosure=_disclosure_policy(settings)
        )
        if engine is None:
            if client is not None:
                engine = _model_engine(settings, client, search, lifecycle, mcp_servers)
            else:
                engine = offline
        breaker = redis_breaker(settings)  # one for every Redis client of the process
        budget = await stack.enter_async_context(_token_budget(settings, breaker))
        logger.info("answer engine: %s", engine.mode)
        ask = AskApplicant(
            knowledge,
            engine,
            conversations,
            default_model=settings.openai_model,
            allowed_models=settings.allowed_model_set,
            max_input_chars=settings.max_input_chars,
            history_budget_chars=settings.history_budget_chars,
            offline=offline if engine is not offline else None,
            budget=budget,
            fall_back_on_failure=settings.fallback_to_offline,
            accepting_questions=lambda: not lifecycle.draining,
            search=search,
            spooled=spooled,
        )
        review = ReviewConversations(
            conversations, retention_days=settings.conversation_retention_days
        )
        _run_in_background(stack, _purge_periodically(review), "purge-conversations")
        rate_limiter = build_rate_limiter(settings, breaker)
        if rate_limiter is not None:
            stack.push_async_callback(rate_limiter.close)
        resumable = await stack.enter_async_context(
            _resumable_answers(settings, breaker, answer_log)
        )
        yield Container(
            settings=settings,
            knowledge=knowledge,
            live_knowledge=live_knowledge,
            conversations=conversations,
            ask=ask,
            search=search,
            review=review,
            lifecycle=lifecycle,
            rate_limiter=rate_limiter,
            mcp_toolbox=toolbox,
            spooled=spooled,
            resumable=resumable,
        )


async def _mcp_toolbox(settings: Settings, stack: AsyncExitStack) -> McpToolbox | None:
    if settings.mcp_servers is None:
        return None
    from infrastructure.mcp_client import open_mcp_toolbox

    return await stack.enter_async_context(open_mcp_toolbox(settings))


def _no_mcp_servers() -> Sequence[MCPServer]:
    return ()


def _model_engine(
    settings: Settings,
    client: AsyncOpenAI,
    search: ProfileSearch,
    lifecycle: Lifecycle,
    mcp_servers: Callable[[], Sequence[MCPServer]] = _no_mcp_servers,
) -> AnswerEngine:
    """The engine that answers with a model: the Responses API, or agents (ENGINE=agents)."""
    from infrastructure.openai_engine import ResponsesEngine, UpstreamPolicy

    policy = UpstreamPolicy(
        max_retries=settings.upstream_max_retries,
        idle_timeout=settings.upstream_idle_timeout_seconds,
        total_timeout=settings.upstream_total_timeout_seconds,
    )
    if settings.resolved_engine == "agents":
        from agents import OpenAIProvider, set_tracing_export_api_key

        from infrastructure.agents_engine import AgentsEngine

        if settings.openai_agents_tracing and settings.openai_api_key is not None:
            set_tracing_export_api_key(settings.openai_api_key.get_secret_value())
        return AgentsEngine(
            search,
            OpenAIProvider(openai_client=client, use_responses=True),
            max_output_tokens=settings.max_output_tokens,
            guardrails=settings.guardrails,
            guardrail_model=settings.openai_model,
            policy=policy,
            lifecycle=lifecycle,
            tracing=settings.openai_agents_tracing,
            mcp_servers=mcp_servers,
            direct_routing=settings.agents_direct_routing,
        )
    return ResponsesEngine(
        client, max_output_tokens=settings.max_output_tokens, policy=policy, lifecycle=lifecycle
    )


def _semantic_search(
    settings: Settings, client: AsyncOpenAI | None, knowledge: KnowledgeIndex, stack: AsyncExitStack
) -> SemanticSearch | None:
    """Embeddings-based search beside the lexical one, when a model provider is configured."""
    if client is None or not settings.semantic_search:
        return None
    from infrastructure.semantic import EmbeddingCache, EmbeddingSearch, QueryVectors

    shared = None
    if settings.redis_url is not None:
        from redis.asyncio import Redis

        from infrastructure.semantic import RedisVectors

        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        stack.push_async_callback(redis.aclose)
        shared = RedisVectors(redis)
    search = EmbeddingSearch(
        client,
        knowledge,
        EmbeddingCache(settings.embeddings_cache),
        model=settings.embedding_model,
        min_similarity=settings.semantic_min_similarity,
        query_vectors=QueryVectors(shared=shared),
        timeout=settings.semantic_timeout_seconds,
    )
    # Embed the documents now, in the background, so the first question need not wait.
    _run_in_background(stack, _warm_up(search), "embed-documents")
    logger.info("semantic search: %s", settings.embedding_model)
    return search


async def _warm_up(search: EmbeddingSearch) -> None:
    try:
        await search.refresh()
    except Exception as error:
        logger.warning(
            "embedding the documents failed: %s; will retry on demand", type(error).__name__
        )


def _disclosure_policy(settings: Settings) -> DisclosurePolicy:
    try:
        policy = load_disclosure_policy(settings.knowledge_dir)
    except PolicyFileError as error:
        logger.error("%s", error)  # names the file and what to fix; it holds no secret
        raise
    if policy.undisclosed:
        logger.info("not disclosed: %s", ", ".join(t.name for t in policy.undisclosed))
    return policy


async def _migrate(settings: Settings) -> None:
    """Migrations on an engine of their own: they may take longer than DATABASE_TIMEOUT_SECONDS
    (or wait for another replica's)."""
    migrator = create_engine(settings.database_url, timeout=MIGRATION_TIMEOUT_SECONDS)
    try:
        await migrate(migrator)
    finally:
        await migrator.dispose()


def _answer_spool(settings: Settings, stack: AsyncExitStack) -> AnswerSpool | None:
    """The spool at ANSWER_SPOOL; none (and an error logged) if it cannot be opened, so that
    a read-only disk does not stop the service: answers are then lost only if the database
    also fails when they end."""
    try:
        spool = SqliteAnswerSpool.open(settings.answer_spool)
    except (OSError, sqlite3.Error) as error:
        logger.error(
            "ANSWER_SPOOL %s cannot be written (%s): answers the database cannot take when "
            "they end will be lost; give it a writable volume",
            settings.answer_spool,
            type(error).__name__,
        )
        return None
    stack.callback(spool.close)
    return spool


@asynccontextmanager
async def _token_budget(
    settings: Settings, breaker: RedisBreaker
) -> AsyncIterator[TokenBudget | None]:
    """DAILY_TOKEN_BUDGET, shared through Redis when REDIS_URL is set."""
    if settings.daily_token_budget <= 0:
        yield None
    elif settings.redis_url is None:
        yield MemoryTokenBudget(settings.daily_token_budget)
    else:
        from redis.asyncio import Redis

        from infrastructure.budget import RedisTokenBudget

        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            decode_responses=True,
        )
        try:
            yield RedisTokenBudget(redis, settings.daily_token_budget, breaker=breaker)
        finally:
            await redis.aclose()


@asynccontextmanager
async def _resumable_answers(
    settings: Settings, breaker: RedisBreaker, log: AnswerLog | None
) -> AsyncIterator[ResumableAnswers | None]:
    """RESUME_WINDOW_SECONDS: answers that outlive their connection, their events kept in Redis
    with REDIS_URL (any replica serves a resume), in memory otherwise. On the way out (after
    the streams had their grace), answers still running are cancelled and stored
    ``interrupted``, before the database closes."""
    if settings.resume_window_seconds <= 0:
        yield None
        return
    async with AsyncExitStack() as stack:
        if log is None:
            if settings.redis_url is None:
                memory = MemoryAnswerLog()
                stack.push_async_callback(memory.close)
                log = memory
            else:
                from redis.asyncio import Redis

                from infrastructure.answer_log_redis import BLOCK_SECONDS, RedisAnswerLog

                # A reader's XREAD BLOCK waits on purpose; every other call is bounded by the
                # breaker's REDIS_TIMEOUT_SECONDS.
                timeout = BLOCK_SECONDS + settings.redis_timeout_seconds
                redis = Redis.from_url(
                    settings.redis_url,
                    socket_timeout=timeout,
                    socket_connect_timeout=settings.redis_timeout_seconds,
                    decode_responses=True,
                )
                stack.push_async_callback(redis.aclose)
                shared = RedisAnswerLog(redis, breaker)
                stack.push_async_callback(shared.close)
                log = shared
        resumable = ResumableAnswers(log, window_seconds=settings.resume_window_seconds)
        stack.push_async_callback(resumable.close)
        yield resumable


def _run_in_background(stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str) -> None:
    """Run ``work`` until the app stops; then cancel it and wait for it to end, so nothing it
    holds (a database connection, say) outlives the resources closed after it."""
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5):
                await task

    stack.push_async_callback(stop)


async def _purge_periodically(review: ReviewConversations) -> None:
    """Forget conversations past CONVERSATION_RETENTION_DAYS, at start-up and then hourly."""
    while True:
        try:
            purged = await review.purge_expired()
            if purged:
                logger.info("purged %d expired conversations", purged)
        except Exception as error:
            logger.warning("purging expired conversations failed: %s", type(error).__name__)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
