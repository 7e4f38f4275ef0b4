"""What a piece of code leaves to the cyclic garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_garbage(module_prefix: str) -> Iterator[list[type]]:
    """With the collector off inside the block, the types (from modules named
    ``module_prefix…``) of the objects that were left in reference cycles, filled in as the
    block ends: what would otherwise wait for the next collection."""
    left: list[type] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield left
        gc.collect()
        left.extend(
            type(garbage)
            for garbage in gc.garbage
            if type(garbage).__module__.startswith(module_prefix)
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
