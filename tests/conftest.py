"""Shared test set-up.

openai>=3 talks HTTP through ``httpx2``; respx patches ``httpx``. Aliasing ``httpx`` to
``httpx2`` before anything imports it lets respx intercept the SDK's requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx2

httpx2.alias_httpx()

import pytest  # noqa: E402

from tests.network_guard import NetworkGuard  # noqa: E402

pytest_plugins = ["respx.plugin"]

_OPENAI_ENVIRONMENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ENGINE", "OPENAI_MODEL")


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    """No test may reach OpenAI or any other host beyond loopback, through any HTTP client,
    nor pick up the developer's key from the environment (tests/network_guard.py)."""
    for name in _OPENAI_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    guard = NetworkGuard()
    guard.install(monkeypatch)
    yield guard
    guard.fail_if_refused()
