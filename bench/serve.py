"""The app under uvicorn for benchmarks, with or without conversation storage.

``BENCH_STORAGE=none uv run python -m bench.serve`` keeps conversations in memory (no
database at all); any other value, or none, serves exactly what ``main.py`` serves, storing
conversations at DATABASE_URL. Everything else comes from the environment as usual (HOST,
PORT, ENGINE, OPENAI_BASE_URL, LOG_LEVEL, ...), so the variants differ only in storage.
"""

from __future__ import annotations

import os

import uvicorn

from api.app import create_app
from infrastructure.settings import Settings
from tests.fakes import InMemoryConversations

settings = Settings()
if os.environ.get("BENCH_STORAGE", "").lower() == "none":
    app = create_app(settings, conversations=InMemoryConversations())
else:
    app = create_app(settings)

if __name__ == "__main__":
    # The same server options as ``main.py``.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds + 10),
    )
