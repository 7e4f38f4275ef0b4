"""Counting asyncio tasks in a test without counting other tests' garbage."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def only_this_tests_tasks() -> AsyncIterator[None]:
    """An HTTP client that an earlier test dropped in a reference cycle schedules its
    ``aclose()`` as a task when the garbage collector frees it, which may be mid-test. Collect
    and settle that first, and keep the collector paused while the test counts."""
    gc.collect()
    current = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not current]
    if others:
        await asyncio.wait(others, timeout=5)
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
