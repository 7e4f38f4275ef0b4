"""Entry point: ``uv run python main.py`` serves on HOST:PORT; ``uvicorn main:app`` works too.

Run that way, pass ``--loop asyncio``: ``python main.py`` does (``api.app.serve``), because
uvloop accepts one connection per turn of a busy event loop (docs/performance.md).
"""

from __future__ import annotations

import sys

from fastapi import FastAPI
from pydantic import ValidationError

from api.app import serve
from bootstrap import create_app
from settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or exit with a message that names what to fix."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        sys.exit(f"Invalid configuration:\n{problems}")


settings = load_settings()
app = create_app(settings)


def served_app() -> FastAPI:
    """The app of one worker process (WEB_CONCURRENCY > 1): each imports this module."""
    app.state.freeze_heap = True
    return app


if __name__ == "__main__":
    serve(app, settings, worker_app="main:served_app")
