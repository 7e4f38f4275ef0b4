"""Reading ``GET /metrics`` as text, in tests of the running app."""

from __future__ import annotations


def sample(metrics: str, name: str) -> float:
    """The value of the one sample ``name`` names, labels included: ``x{a="b"}``."""
    [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])
