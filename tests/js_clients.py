"""Run the JavaScript clients in tests/js (the `ai` package's own reader) from Python tests.

`.ci/run` installs them with `npm ci` from tests/js/package-lock.json. Elsewhere, without
`tests/js/node_modules`, the tests that need them skip with the command to run; in CI
(`CI=true`) they fail instead, so a missing install cannot pass unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"


def require_js_clients() -> str:
    """The ``node`` executable, once tests/js is installed; otherwise skip (or fail in CI)."""
    node = shutil.which("node")
    problem = None
    if node is None:
        problem = "Node.js (node) is not on PATH"
    elif not (JS_DIR / "node_modules" / "ai" / "package.json").is_file():
        problem = "tests/js/node_modules is missing: run `npm ci --prefix tests/js`"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: .ci/run installs it)")
        print(f"skipped: {problem}")
        pytest.skip(problem)
    assert node is not None
    return node


def run_js(script: str, *args: str, timeout: float = 60.0) -> Any:
    """Run ``tests/js/<script>`` with ``args``; its standard output, parsed as JSON."""
    node = require_js_clients()
    finished = subprocess.run(  # noqa: S603 - our own script, arguments from the test
        [node, str(JS_DIR / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=JS_DIR,
        check=False,
    )
    assert finished.returncode == 0, f"{script} failed:\n{finished.stderr[-4000:]}"
    return json.loads(finished.stdout)
