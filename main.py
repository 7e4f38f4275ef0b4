"""Entry point: ``uv run python main.py`` serves on HOST:PORT; ``uvicorn main:app`` works too.

Run that way, pass ``--loop asyncio``: ``python main.py`` does (``api.serving``), because
uvloop accepts one connection per turn of a busy event loop (docs/performance.md).
With WEB_CONCURRENCY > 1, ``python main.py`` runs that many worker processes, each of which
imports this module and serves its own ``app``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from api.serving import serve, serve_workers
from settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


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

if __name__ == "__main__" and settings.web_concurrency > 1:
    # This process only starts, watches and stops the workers, so it builds no app.
    serve_workers(settings, "main:served_app")
    sys.exit()

from bootstrap import create_app  # noqa: E402 - not for the workers' parent above

app = create_app(settings)


def served_app() -> FastAPI:
    """The app of one worker process (WEB_CONCURRENCY > 1)."""
    app.state.freeze_heap = True
    return app


if __name__ == "__main__":
    serve(app, settings)
