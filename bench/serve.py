"""The app under uvicorn for benchmarks, with or without conversation storage.

``BENCH_STORAGE=none uv run python -m bench.serve`` keeps conversations in memory (no
database at all); any other value, or none, serves exactly what ``main.py`` serves, storing
conversations at DATABASE_URL. Everything else comes from the environment as usual (HOST,
PORT, ENGINE, OPENAI_BASE_URL, LOG_LEVEL, ...), so the variants differ only in storage.
"""

from __future__ import annotations

import os

from api.serving import serve
from bootstrap import create_app
from settings import Settings
from testing.conversations import InMemoryConversations

settings = Settings()
if os.environ.get("BENCH_STORAGE", "").lower() == "none":
    app = create_app(settings, conversations=InMemoryConversations())
else:
    app = create_app(settings)

if __name__ == "__main__":
    serve(app, settings)
