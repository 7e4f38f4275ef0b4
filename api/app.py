"""The FastAPI application and its lifespan, given a way to open the container.

``bootstrap.create_app`` passes the composition root here; the API itself never builds an
adapter.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TypedDict

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import admin, page, ui_message_stream
from api.container import Container
from api.docs_pages import install_docs_pages
from api.errors import install_error_handlers
from api.mcp_server import McpEndpoint
from api.observability import REQUEST_ID_HEADER, install_observability
from api.protection import install_protection
from api.routes import router
from common.lifecycle import Lifecycle, watch_for_shutdown
from settings import Settings

DESCRIPTION = """\
Ask the Applicant (지원자에게 무엇이든 물어봐!) answers recruiters' questions about one job
applicant, grounded in the applicant's own documents, in Korean or English.

`POST /openai-response/sse` streams the answer as Server-Sent Events; `POST /openai-response`
returns it as JSON. Errors always have the body `{"code", "message"}`.
"""


class AppState(TypedDict):
    container: Container


OpenContainer = Callable[[Lifecycle], AbstractAsyncContextManager[Container]]
"""Builds the container for the app's lifetime (and closes what it opened), given the
lifecycle that tells the app is shutting down."""


def _freeze_heap() -> bool:
    """Moves every object alive once the app has started (modules, the documents' index, the
    SDK clients: most of the heap) out of the garbage collector's reach. Its full collections
    then scan only what requests allocate: in a burst of 100 questions they had taken about
    a quarter of the CPU the answers cost (docs/performance.md, "Bursts")."""
    gc.collect()
    gc.freeze()
    return True


def build_app(settings: Settings, open_container: OpenContainer) -> FastAPI:
    """The app for ``settings``, serving what ``open_container`` wires in its lifespan."""
    # Watched from now on: uvicorn installs its signal handlers before the lifespan starts.
    lifecycle = Lifecycle(settings.shutdown_grace_seconds)
    stop_watching = watch_for_shutdown(lifecycle)

    mcp: McpEndpoint | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        async with open_container(lifecycle) as container:
            app.state.metrics.watch_tool_servers(container.mcp_toolbox)
            app.state.metrics.watch_spool(container.spooled)
            if container.ask.mode != "offline":
                app.state.metrics.expect_fallbacks_from(container.ask.mode)
            try:
                # The MCP server's session manager runs as long as the app (docs/mcp.md).
                serving_mcp = mcp.serving(container) if mcp is not None else nullcontext()
                async with serving_mcp:
                    frozen = _freeze_heap() if getattr(app.state, "freeze_heap", False) else False
                    try:
                        yield {"container": container}
                    finally:
                        if frozen:
                            gc.unfreeze()
                        app.state.metrics.close()
            finally:
                stop_watching()

    app = FastAPI(
        title="Ask the Applicant",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by api/docs_pages.py from the app's own origin: FastAPI's load from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs_pages(app)
    app.include_router(router)
    # POST /api/chat: the AI SDK's useChat protocol on the same use case.
    app.include_router(ui_message_stream.router)
    app.include_router(admin.router)
    # The chat page at GET / and its static files; not part of the API's OpenAPI schema.
    app.include_router(page.router)
    if settings.mcp_server_enabled:
        mcp = McpEndpoint(app, settings.cors_origins)
        mcp.mount()
    install_error_handlers(app)
    # Before CORS, so that CORS headers reach 413 and 429 answers too.
    install_protection(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            # DELETE: stopping an answer in flight (DELETE /conversations/{id}/stream).
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "Last-Event-ID", "Mcp-Protocol-Version"],
            expose_headers=[REQUEST_ID_HEADER, "Retry-After", "X-RateLimit-Limit"],
            max_age=600,
        )
    # Last: its middleware must be the outermost, to see (and tag) every response.
    install_observability(app, settings)
    return app
