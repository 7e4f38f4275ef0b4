"""How the service runs under uvicorn: one process, or WEB_CONCURRENCY workers on one port.

Apart from ``api.app`` so that the workers' parent, which only starts, watches and stops them,
imports uvicorn and the logging set-up, not the app: it holds about 60 MB instead of 120.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any

from api.observability import configure_logging
from settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def _uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options the service is deployed with, in one process or in each worker."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # Logging is configured by create_app (JSON lines, our own access log line).
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        # Not uvloop (uvicorn's default when installed): libuv accepts one connection per turn
        # of the event loop (libuv PR #3696), so on a busy server a burst of new connections
        # waits seconds in the listen queue. asyncio's loop accepts the whole queue at once,
        # and costs this app no more CPU per relayed delta (docs/performance.md).
        "loop": "asyncio",
        # Streams get SHUTDOWN_GRACE_SECONDS to finish; connections a little longer to close.
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds + 10),
    }


def serve(app: FastAPI, settings: Settings) -> None:
    """Run ``app`` in this process (WEB_CONCURRENCY=1)."""
    import uvicorn

    if settings.web_concurrency != 1:
        raise ValueError("WEB_CONCURRENCY > 1: run the workers with serve_workers")
    # A served app lives long: what it built at start-up is frozen out of the collector's
    # scans (tests, which build many apps, do not). A worker's factory does the same.
    app.state.freeze_heap = True
    uvicorn.run(app, **_uvicorn_options(settings))


def serve_workers(settings: Settings, worker_app: str) -> None:
    """Run WEB_CONCURRENCY worker processes on the port, each calling the factory
    ``worker_app`` names (``"module:function"``) for its own app; this process only starts
    them, restarts one that dies and passes SIGTERM on (uvicorn's supervisor).

    Each worker migrates at its start, as replicas do (one migrates, the others wait and find
    it done). Their metrics go to a folder of their own for as long as they run, where
    ``GET /metrics`` adds them up.
    """
    import uvicorn

    configure_logging(settings.log_level, settings.log_format)
    with tempfile.TemporaryDirectory(prefix="ask-the-applicant-metrics-") as directory:
        # Read by prometheus_client when a worker imports it: set before they start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        uvicorn.run(
            worker_app,
            factory=True,
            workers=settings.web_concurrency,
            **_uvicorn_options(settings),
        )
