# syntax=docker/dockerfile:1

# Ask the Applicant: FastAPI service, served by uvicorn through `python main.py`.
#
# The build and runtime images must share the Debian release and the Python minor version:
# the virtual environment's bin/python is a symlink to /usr/local/bin/python3.13, which both
# images provide. Change the two ARGs together.
ARG UV_IMAGE=ghcr.io/astral-sh/uv:python3.13-bookworm-slim
ARG PYTHON_IMAGE=python:3.13-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${UV_IMAGE} AS build

# Compile bytecode at build time, copy from the cache mount instead of hard-linking, and only
# ever use the image's own interpreter (never download one) so the venv's symlink stays valid.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.13 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first, from the lock file alone: this layer is reused until pyproject.toml or
# uv.lock changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    uv sync --frozen --no-dev --no-install-project

# Then the source (what .dockerignore lets through) and the project itself.
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

# The runtime filesystem is read-only under compose, so compile the app's own modules now.
RUN python -m compileall -q -j 0 -x '/\.venv/' /app

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ask-the-applicant" \
      org.opencontainers.image.description="Answers recruiters' questions about one job applicant, grounded in the applicant's documents, streamed over Server-Sent Events." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home \
            --shell /usr/sbin/nologin app

WORKDIR /app

# Code and venv stay owned by root (the app cannot modify itself); only data/ is the app's:
# the default DATABASE_URL puts SQLite there, on a volume (a volume mounted there inherits this
# ownership on first use). The app migrates the schema at start-up; by hand, `alembic upgrade
# head` from /app (alembic.ini and infrastructure/migrations/ are part of the copied source).
COPY --from=build /app /app
RUN install -d -o app -g app -m 0750 /app/data

# MALLOC_ARENA_MAX=2: glibc's malloc keeps up to 8 arenas a core for the threads (the SQLite
# and DNS threads among them); two hold the same objects in less memory: about 100 KB of RSS
# per open stream at 1,000 streams instead of 102 to 129 KB (docs/performance.md).
ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    HOST=0.0.0.0 \
    PORT=8000 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2

USER 10001:10001

EXPOSE 8000

# curl is not in the slim image: probe /health with the standard library. Any exception
# (refused, timeout, non-2xx) exits 1, which Docker counts as unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# uvicorn handles SIGTERM: it stops accepting connections and lets open streams finish.
STOPSIGNAL SIGTERM

CMD ["python", "main.py"]
