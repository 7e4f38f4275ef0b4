"""Shared test set-up.

openai>=3 talks HTTP through ``httpx2``; respx patches ``httpx``. Aliasing ``httpx`` to
``httpx2`` before anything imports it lets respx intercept the SDK's requests.
"""

from __future__ import annotations

import httpx2

httpx2.alias_httpx()

import pytest  # noqa: E402

pytest_plugins = ["respx.plugin"]

_REAL_OPENAI_HOSTS = ("api.openai.com",)
_OPENAI_ENVIRONMENT = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ENGINE", "OPENAI_MODEL")


@pytest.fixture(autouse=True)
def _forbid_real_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach OpenAI, nor pick up the developer's key from the environment."""
    for name in _OPENAI_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    real_send = httpx2.AsyncHTTPTransport.handle_async_request

    async def guarded_send(
        self: httpx2.AsyncHTTPTransport, request: httpx2.Request
    ) -> httpx2.Response:
        if request.url.host in _REAL_OPENAI_HOSTS:
            raise RuntimeError(f"a test tried to reach {request.url.host}; use the fake upstream")
        return await real_send(self, request)

    monkeypatch.setattr(httpx2.AsyncHTTPTransport, "handle_async_request", guarded_send)
