"""The applicant's profile as an MCP server, at ``/mcp/`` over streamable HTTP.

Tools: ``search_profile`` (the passages that cover a query, with their sources, from the
chat's own search, ``SearchProfile``) and ``ask_applicant`` (an answer from the configured
engine, through the same use case as the chat). Resources: one per document of the profile,
read from the live index, so a reload of KNOWLEDGE_DIR shows at once. See ``docs/mcp.md``.

The server is stateless (each POST is answered on its own), so any replica can answer any
request and no session is kept per client. ``McpEndpoint`` is the ASGI app mounted at
``/mcp`` and ``/mcp/``; in front of the MCP SDK it checks ``Origin`` and counts each
``tools/call`` against the client's RATE_LIMIT_PER_MINUTE (the chat's counter), answering
429 with ``Retry-After`` and a JSON-RPC error the MCP client shows as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import FastAPI
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import Resource as McpResource
from mcp_types import ToolAnnotations
from pydantic import AnyUrl, BaseModel, Field
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.container import Container
from api.dependencies import rate_limit_decision
from api.errors import HttpErrorCode, TooManyRequests
from api.observability import Metrics
from api.sse import source_items
from domain.conversation import utf8_text
from domain.errors import UPSTREAM_MESSAGES, AnswerNotCompleted, AskError, ErrorCode, InputTooLong
from domain.models import Message as ChatMessage
from domain.models import Passage

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SERVER_NAME = "ask-the-applicant"
DOCUMENT_URI_PREFIX = "profile://documents/"
SEARCH_LIMIT = 5
SEARCH_CANDIDATES = SEARCH_LIMIT * 2
"""Passages retrieved to choose the SEARCH_LIMIT from (a bilingual profile says most things
twice)."""
# Only tool calls are questions; listing tools and reading documents cost nothing.
COUNTED_METHODS = frozenset({"tools/call"})
# JSON-RPC leaves -32000..-32099 to servers; 429 is easy to remember.
RATE_LIMITED = -32029
FORBIDDEN_ORIGIN = -32003
NOT_READY = -32001
METHOD_NOT_ALLOWED = -32000
PARSE_ERROR = -32700  # JSON-RPC's own code

INSTRUCTIONS = """\
This server answers questions about one job applicant from the applicant's own documents \
(résumé, projects, self-introduction, FAQ), in Korean or English. Use `ask_applicant` for a \
grounded answer with its sources, `search_profile` to read the passages that match a query, \
and the `profile://documents/...` resources to read whole documents. Nothing here is invented: \
if the documents do not cover a question, the answer says so.
"""


class PassageOut(BaseModel):
    id: int
    source: str
    heading: str
    citation: str
    text: str
    page: int | None = None


class SourceOut(BaseModel):
    """What a numbered citation ([1], [2], ...) of the answer refers to."""

    id: int
    source: str
    heading: str
    snippet: str
    page: int | None = None


class AnswerOut(BaseModel):
    answer: str
    sources: list[SourceOut]
    conversation_id: str
    mode: str
    model: str


def document_uri(source: str) -> str:
    """``profile://documents/en/resume.md``; non-ASCII names are percent-encoded."""
    return DOCUMENT_URI_PREFIX + quote(source, safe="/")


def _source_of(uri: str) -> str | None:
    if not uri.startswith(DOCUMENT_URI_PREFIX):
        return None
    return unquote(uri.removeprefix(DOCUMENT_URI_PREFIX))


def _mime_type(source: str) -> str:
    return "text/plain" if source.lower().endswith(".txt") else "text/markdown"


def documents(passages: Sequence[Passage]) -> dict[str, list[Passage]]:
    """Passages by source, in index order."""
    grouped: dict[str, list[Passage]] = {}
    for passage in passages:
        grouped.setdefault(passage.source, []).append(passage)
    return grouped


def render_document(passages: Sequence[Passage]) -> str:
    """A document rebuilt from its passages: headings as markdown, PDF pages marked."""
    blocks: list[str] = []
    previous: tuple[str, ...] = ()
    page: int | None = None
    for passage in passages:
        if passage.page is not None and passage.page != page:
            page = passage.page
            blocks.append(f"[p. {page}]")
        path = passage.heading_path
        shared = 0
        while shared < min(len(path), len(previous)) and path[shared] == previous[shared]:
            shared += 1
        blocks.extend(f"{'#' * (level + 1)} {path[level]}" for level in range(shared, len(path)))
        previous = path
        blocks.append(passage.text.strip())
    return "\n\n".join(blocks) + "\n"


class ProfileServer(MCPServer[Any]):
    """The MCP server of one running container: its tools, and its documents as resources.

    Resources are listed from the live index on each request instead of being registered
    once, so documents added, changed or removed in KNOWLEDGE_DIR show without a restart.
    """

    def __init__(
        self,
        container: Container,
        *,
        metrics: Callable[[], Metrics | None] = lambda: None,
    ) -> None:
        super().__init__(
            SERVER_NAME,
            title="Ask the Applicant",
            instructions=INSTRUCTIONS,
            version="0.1.0",
        )
        self._container = container
        self._metrics = metrics
        self.add_tool(
            self.search_profile,
            name="search_profile",
            annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
            description=(
                "Search the applicant's documents (Korean or English) and return the passages "
                "that cover the query, best first, each with its source and heading. "
                "An empty list means the documents do not cover it."
            ),
        )
        self.add_tool(
            self.ask_applicant,
            name="ask_applicant",
            annotations=ToolAnnotations(
                read_only_hint=False, destructive_hint=False, open_world_hint=False
            ),
            description=(
                "Ask a question about the applicant (experience, skills, projects, "
                "availability), in Korean or English. Returns an answer grounded in the "
                "applicant's documents, with its numbered sources. Pass the returned "
                "conversation_id to ask a follow-up in the same conversation."
            ),
        )

    async def search_profile(
        self,
        query: Annotated[
            str, Field(description="What to look for, e.g. 'Kubernetes experience' or '경력'.")
        ],
    ) -> list[PassageOut]:
        settings = self._container.settings
        if not query.strip():
            raise ToolError("'query' is empty: send the words to search for.")
        if len(query) > settings.max_input_chars:
            raise ToolError(InputTooLong(len(query), settings.max_input_chars).message)
        found = await self._container.search.search(
            query, limit=SEARCH_LIMIT, candidates=SEARCH_CANDIDATES
        )
        if found.decline is not None:
            raise ToolError(found.decline.text)
        results: list[PassageOut] = []
        for number, hit in enumerate(found.passages, start=1):
            passage = hit.passage
            results.append(
                PassageOut(
                    id=number,
                    source=passage.source,
                    heading=passage.heading,
                    citation=passage.citation,
                    text=passage.text,
                    page=passage.page,
                )
            )
        return results

    async def ask_applicant(
        self,
        question: Annotated[
            str,
            Field(description="The recruiter's question, e.g. 'What did she do at Hanbit Pay?'"),
        ],
        conversation_id: Annotated[
            str | None,
            Field(description="From an earlier answer, to ask a follow-up; omit to start anew."),
        ] = None,
    ) -> AnswerOut:
        if not question.strip():
            raise ToolError("'question' is empty: send a question.")
        metrics = self._metrics()
        try:
            answer = await self._container.ask.answer(
                [ChatMessage("user", question)], None, conversation_id
            )
        except AskError as error:
            if metrics is not None and isinstance(error, AnswerNotCompleted):
                metrics.count_failure(error.code)
                metrics.count_usage(error.usage)
            raise ToolError(error.message) from None
        except Exception as error:
            # Never a stack trace or an upstream message to the client: the type is logged.
            logger.error("ask_applicant failed: %s", type(error).__name__)
            raise ToolError(UPSTREAM_MESSAGES[ErrorCode.INTERNAL_ERROR]) from None
        if metrics is not None:
            if answer.fallback_cause is not None:
                metrics.count_fallback(self._container.ask.mode, answer.fallback_cause)
            metrics.count_usage(answer.usage)
            metrics.count_usage(answer.fallback_usage)
            metrics.count_decline(answer.declined)
        return AnswerOut(
            answer=utf8_text(answer.text),
            sources=[SourceOut(**item) for item in source_items(answer.sources)],
            conversation_id=answer.meta.conversation_id,
            mode=answer.meta.mode,
            model=answer.meta.model,
        )

    async def list_resources(self) -> list[McpResource]:
        return [
            McpResource(
                uri=document_uri(source),
                name=source,
                title=next((p.heading_path[0] for p in passages if p.heading_path), source),
                description=(
                    f"The text extracted from {source} ({len(passages)} passages)."
                    if source.lower().endswith(".pdf")
                    else f"{source} ({len(passages)} passages)."
                ),
                mime_type=_mime_type(source),
            )
            for source, passages in documents(self._container.knowledge.passages).items()
        ]

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> list[ReadResourceContents]:
        source = _source_of(str(uri))
        passages = documents(self._container.knowledge.passages).get(source or "")
        if not passages or source is None:
            raise ResourceNotFoundError(
                f"No document at {uri}: list the resources to see the documents."
            )
        return [ReadResourceContents(render_document(passages), _mime_type(source))]


def _json_rpc_error(
    status: int,
    code: int,
    message: str,
    request_id: object = None,
    *,
    data: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return JSONResponse(
        {"jsonrpc": "2.0", "id": request_id, "error": error}, status_code=status, headers=headers
    )


class _Unparsable(Exception):
    """The body is not JSON the server can read; the message says why."""


def _parsed(body: bytes) -> object:
    """The JSON-RPC body, parsed as the MCP SDK will parse it (UTF-8 JSON)."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Unparsable("Parse error: the body is not UTF-8 text.") from None
    except RecursionError:
        raise _Unparsable("Parse error: the body is nested too deeply.") from None
    except ValueError as error:
        raise _Unparsable(f"Parse error: the body is not valid JSON ({error}).") from None


def _counted_request_id(parsed: object) -> tuple[bool, object]:
    """Whether the body holds a request to count, and the id to answer it with."""
    messages = parsed if isinstance(parsed, list) else [parsed]
    for message in messages:
        if isinstance(message, dict) and message.get("method") in COUNTED_METHODS:
            return True, message.get("id")
    return False, None


def _origin_allowed(scope: Scope, allowed: Sequence[str]) -> bool:
    """No ``Origin`` (a non-browser client), the site itself, or one of CORS_ORIGINS."""
    headers = Headers(scope=scope)
    origin = headers.get("origin")
    if origin is None or origin in allowed:
        return True
    return urlsplit(origin).netloc == headers.get("host")


async def _read_body(receive: Receive) -> bytes:
    # The app's RequestBodyGuard has already bounded the body to MAX_BODY_BYTES.
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class McpEndpoint:
    """The ASGI app at ``/mcp`` and ``/mcp/``: origin check, rate limit, then the MCP server.

    ``mount`` adds the routes when the app is created; ``serving`` builds the MCP server for
    the container of each lifespan and runs its session manager (the MCP SDK requires one
    ``run()`` per manager, so a new server is built each time the app starts).
    """

    def __init__(self, app: FastAPI, cors_origins: Sequence[str]) -> None:
        self._app = app
        self._cors_origins = tuple(cors_origins)
        self._handle: ASGIApp | None = None
        self._route = Route(f"{MCP_PATH}/", self, include_in_schema=False)

    def mount(self) -> None:
        # Both spellings: a redirect from /mcp to /mcp/ is not followed by every MCP client.
        self._app.router.routes.append(Route(MCP_PATH, self, include_in_schema=False))
        self._app.router.routes.append(self._route)

    @asynccontextmanager
    async def serving(self, container: Container) -> AsyncIterator[None]:
        server = ProfileServer(
            container,
            metrics=lambda: getattr(self._app.state, "metrics", None),
        )
        server.streamable_http_app(
            stateless_http=True,
            max_request_body_size=container.settings.max_body_bytes,
            # The endpoint is public and sends no credentials, so DNS rebinding gains an
            # attacker nothing; ``Origin`` is checked in ``__call__`` against CORS_ORIGINS.
            # (The SDK would otherwise accept only a Host of localhost.)
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = server.session_manager
        async with manager.run():
            self._handle = manager.handle_request
            try:
                yield
            finally:
                self._handle = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self._route  # one label, "/mcp/", in the access log and metrics
        handle = self._handle
        if handle is None:
            response = _json_rpc_error(503, NOT_READY, "The MCP server is not running.")
            await response(scope, receive, send)
            return
        if not _origin_allowed(scope, self._cors_origins):
            message = "This Origin may not use the MCP server (see CORS_ORIGINS)."
            await _json_rpc_error(403, FORBIDDEN_ORIGIN, message)(scope, receive, send)
            return
        if scope["method"] != "POST":
            # Stateless: no stream for server messages (GET) and no session to end (DELETE).
            # The SDK would hold a GET open for ever; 405 is the spec's "no stream here".
            message = "Send JSON-RPC requests with POST; this server keeps no stream or session."
            response = _json_rpc_error(405, METHOD_NOT_ALLOWED, message, headers={"Allow": "POST"})
            await response(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            parsed = _parsed(body)
        except _Unparsable as error:
            # Answered here, as the SDK would: its own parser cannot take every body (one
            # nested 20,000 levels deep raised RecursionError, a 500).
            await _json_rpc_error(400, PARSE_ERROR, str(error))(scope, receive, send)
            return
        refusal = await _rate_limited(scope, parsed)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await handle(scope, _replaying(body, receive), send)


async def _rate_limited(scope: Scope, parsed: object) -> JSONResponse | None:
    """429 for a tool call over the client's RATE_LIMIT_PER_MINUTE (shared with the chat)."""
    counted, request_id = _counted_request_id(parsed)
    if not counted:
        return None
    decision = await rate_limit_decision(scope)
    if decision is None or decision.allowed:
        return None
    refused = TooManyRequests(decision.limit, decision.retry_after_seconds)
    headers = dict(refused.headers or {})
    return _json_rpc_error(
        429,
        RATE_LIMITED,
        refused.detail,
        request_id,
        data={
            "code": HttpErrorCode.RATE_LIMITED.value,
            "retry_after_seconds": int(headers["Retry-After"]),
        },
        headers=headers,
    )
