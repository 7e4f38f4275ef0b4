"""The relay load benchmark runs end to end: upstream, three targets, load generator.

Only that it measures, with tiny numbers; the timing targets live in ``bench.relay`` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testing.app_server import PROJECT_ROOT

pytestmark = pytest.mark.e2e

TARGETS = {"direct", "baseline", "app", "app-agents"}
WORKLOADS = {"saturation", "paced", "capacity"}
# Semantic search changes the time to first delta: measured in the paced workload only.
SEMANTIC_TARGETS = {"app-semantic", "app-semantic-new"}


@pytest.mark.timeout(180)
def test_quick_relay_benchmark_measures_every_target_without_errors(tmp_path: Path) -> None:
    results = tmp_path / "relay.json"
    command = [sys.executable, "-m", "bench.relay", "--quick", "--no-fail"]
    command += ["--duration", "0.5", "--warmup", "0.2", "--max-streams", "5"]
    command += ["--concurrency", "2", "--paced-concurrency", "4", "--json", str(results)]
    finished = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=170, check=False
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    measurements = json.loads(results.read_text(encoding="utf-8"))["measurements"]
    measured = {(m["target"], m["workload"]) for m in measurements}
    assert measured == {(target, workload) for target in TARGETS for workload in WORKLOADS} | {
        (target, "paced") for target in SEMANTIC_TARGETS
    }
    for measurement in measurements:
        label = f"{measurement['target']} {measurement['workload']}"
        assert measurement["summary"]["errors"] == 0, (label, measurement["load"]["error_samples"])
        assert measurement["summary"]["deltas"] > 0, label
    # The semantic targets' embeddings latency is measured, not taken from the setting.
    [direct_paced] = [
        m for m in measurements if (m["target"], m["workload"]) == ("direct", "paced")
    ]
    round_trips = direct_paced["extra"]["embeddings_ms"]
    assert round_trips, "no /v1/embeddings call was timed beside the direct paced run"
    assert all(ms >= 150 for ms in round_trips), round_trips  # the configured 150 ms at least
    assert "ms a call), new questions" in finished.stdout
    assert "targets:" in finished.stdout
    assert "ENGINE=agents load-tested" in finished.stdout
