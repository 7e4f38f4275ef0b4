"""The layers' import rules (docs/architecture.md): inner layers never import outer ones, and
only the composition root (``bootstrap.py``) imports the adapters in ``infrastructure/``.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROJECT_MODULES = frozenset(
    {
        "api",
        "application",
        "bench",
        "bootstrap",
        "client",
        "common",
        "domain",
        "evaluation",
        "infrastructure",
        "main",
        "settings",
        "testing",
        "tests",
    }
)

# What each part of the service may import of the project, besides itself.
ALLOWED = {
    "domain": frozenset(),
    "common": frozenset(),
    "settings": frozenset(),
    "application": frozenset({"domain", "common"}),
    "infrastructure": frozenset({"domain", "common", "settings"}),
    "api": frozenset({"application", "domain", "common", "settings"}),
    # The terminal client is packaged with common/ only (pyproject.toml): none of the server.
    "client": frozenset({"common"}),
    "main": frozenset({"api", "bootstrap", "settings"}),
}

# Outside the standard library, the domain may use these only.
DOMAIN_THIRD_PARTY = frozenset({"pydantic", "typing_extensions"})

OPENAI_SETTINGS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ENGINE", "MCP_SERVERS", "REDIS_URL")


def _modules(part: str) -> list[Path]:
    single = ROOT / f"{part}.py"
    if single.is_file():
        return [single]
    return sorted(p for p in (ROOT / part).rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> list[str]:
    """The absolute module names ``path`` imports, wherever in the file."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _violations(part: str) -> list[str]:
    allowed = ALLOWED[part] | {part}
    found = []
    for path in _modules(part):
        for name in _imports(path):
            top = name.partition(".")[0]
            if top in PROJECT_MODULES and top not in allowed:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_inside_it(part: str) -> None:
    assert _modules(part), f"no module found for {part}"
    assert _violations(part) == []


def test_the_domain_uses_the_standard_library_and_pydantic_only() -> None:
    outside = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("domain")
        for name in _imports(path)
        if (top := name.partition(".")[0]) not in sys.stdlib_module_names
        and top not in DOMAIN_THIRD_PARTY
        and top not in PROJECT_MODULES
    ]
    assert outside == []


def test_the_rule_catches_an_adapter_imported_by_the_api(tmp_path: Path) -> None:
    module = tmp_path / "routes.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from infrastructure.knowledge import Bm25KnowledgeIndex\n"
        "def handler():\n"
        "    import bootstrap\n",
        encoding="utf-8",
    )
    assert _imports(module) == ["typing", "infrastructure.knowledge", "bootstrap"]


def test_a_service_that_answers_offline_imports_no_optional_sdk() -> None:
    """With the default settings (no key) the model SDKs, the MCP client and Redis stay
    unimported: they cost start-up seconds the service would not use."""
    probe = "import sys, main; print(' '.join(sorted({m.partition('.')[0] for m in sys.modules})))"
    environment = {k: v for k, v in os.environ.items() if k not in OPENAI_SETTINGS}
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=environment | {"KNOWLEDGE_WATCH": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = set(result.stdout.split())
    assert imported & {"agents", "openai", "redis", "alembic"} == set()
