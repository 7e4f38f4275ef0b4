"""The process's life: knowing when a shutdown has begun, and how long streams may still run.

uvicorn handles SIGTERM by closing its listening socket and waiting for open connections.
sse-starlette would then cancel every stream at once; instead, streams in flight may finish
within ``SHUTDOWN_GRACE_SECONDS`` and are then ended with an ``error`` event (and stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sse_starlette.sse import AppStatus
from uvicorn.server import Server

logger = logging.getLogger(__name__)


class Lifecycle:
    """Draining state shared by the engines (to bound their waits) and the routes (503)."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace_seconds = grace_seconds
        self._clock = clock
        self._drain_deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self._drain_deadline is not None

    def begin_drain(self) -> None:
        if self._drain_deadline is None:
            self._drain_deadline = self._clock() + self._grace_seconds
            logger.info("shutting down: open streams have %.0fs to finish", self._grace_seconds)

    def time_left(self) -> float | None:
        """Seconds until open streams must end, or ``None`` while not shutting down."""
        if self._drain_deadline is None:
            return None
        return max(0.0, self._drain_deadline - self._clock())


_lifecycles: list[Lifecycle] = []
_original_handle_exit: Callable[..., Any] | None = None


def _handle_exit(server: Server, *args: Any, **kwargs: Any) -> None:
    for lifecycle in _lifecycles:
        lifecycle.begin_drain()
    if _original_handle_exit is not None:
        _original_handle_exit(server, *args, **kwargs)


def watch_for_shutdown(lifecycle: Lifecycle) -> Callable[[], None]:
    """Begin draining ``lifecycle`` when uvicorn receives SIGTERM or SIGINT.

    Works for ``python main.py`` and ``uvicorn main:app`` alike, by wrapping uvicorn's signal
    handler (as sse-starlette does). sse-starlette's own immediate drain is turned off: the
    engines end their streams when the grace period is over. Returns an undo function.
    """
    global _original_handle_exit
    if _original_handle_exit is None:
        _original_handle_exit = Server.handle_exit
        Server.handle_exit = _handle_exit  # type: ignore[method-assign,assignment]
    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
    _lifecycles.append(lifecycle)

    def forget() -> None:
        if lifecycle in _lifecycles:
            _lifecycles.remove(lifecycle)

    return forget
