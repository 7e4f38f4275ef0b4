"""The process's life: knowing when a shutdown has begun, and how long streams may still run.

uvicorn handles SIGTERM by closing its listening socket and waiting for open connections.
sse-starlette would then cancel every stream at once; instead, streams in flight may finish
within ``SHUTDOWN_GRACE_SECONDS`` and are then ended with an ``error`` event (and stored).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from sse_starlette.sse import AppStatus
from uvicorn.server import Server

logger = logging.getLogger(__name__)


class Bounded(Protocol):
    """A wait with a deadline in the event loop's clock: a cancel scope, a ``RollingDeadline``."""

    deadline: float


class Lifecycle:
    """Draining state shared by the engines (to bound their waits) and the use case (503)."""

    def __init__(self, grace_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._grace_seconds = grace_seconds
        self._clock = clock
        self._drain_deadline: float | None = None
        self._waits: set[Bounded] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def draining(self) -> bool:
        return self._drain_deadline is not None

    def begin_drain(self) -> None:
        """Start the grace period. Safe to call from a signal handler."""
        if self._drain_deadline is not None:
            return
        self._drain_deadline = self._clock() + self._grace_seconds
        logger.info("shutting down: open streams have %.0fs to finish", self._grace_seconds)
        if self._loop is not None and not self._loop.is_closed():
            # A signal handler may run in the middle of the loop's own bookkeeping: let the
            # loop shorten the waits itself.
            self._loop.call_soon_threadsafe(self._shorten_waits)

    @contextmanager
    def bounding(self, wait: Bounded) -> Iterator[None]:
        """Cut ``wait`` short when the grace period ends, even if it started before the drain."""
        self._loop = asyncio.get_running_loop()
        self._waits.add(wait)
        self._shorten(wait)
        try:
            yield
        finally:
            self._waits.discard(wait)

    def _shorten_waits(self) -> None:
        for wait in list(self._waits):
            self._shorten(wait)

    def _shorten(self, wait: Bounded) -> None:
        left = self.time_left()
        if left is not None:
            # Cancel-scope deadlines are in the event loop's clock.
            wait.deadline = min(wait.deadline, asyncio.get_running_loop().time() + left)

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
