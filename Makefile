# Shortcuts for the commands in the README; each is one line.
.PHONY: run test unit format lint typecheck check

run:
	uv run python main.py

test:
	uv run pytest

unit:
	uv run pytest tests/unit

format:
	uv run ruff format . && uv run ruff check --fix .

lint:
	uv run ruff check . && uv run ruff format --check .

typecheck:
	uv run mypy

check: lint typecheck test
