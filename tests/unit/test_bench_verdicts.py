"""``bench.relay``'s verdicts say when a paced figure comes from a saturated server."""

from __future__ import annotations

from typing import Any

import pytest

from bench.relay import Measurement, Plan, Target, verdicts


def paced(target: Target, ttfd_ms: float, busy: float) -> Measurement:
    load: dict[str, Any] = {"ttfd_ms": [ttfd_ms], "errors": {}, "deltas_in_window": 1000}
    return Measurement(
        target=target,
        workload="paced",
        concurrency=100,
        deltas_per_answer=200,
        delay=0.02,
        load=load,
        window_s=10.0,
        server_cpu_s=10.0 * busy,
        upstream_cpu_s=None,
        peak_rss_kb=1,
    )


PLAN = Plan(
    targets=("direct", "app"),
    workloads=("paced",),
    duration=10.0,
    warmup=2.0,
    concurrency=32,
    saturation_deltas=200,
    paced_concurrency=100,
    paced_deltas=200,
    delay=0.02,
    steps=(),
    idle_timeout=30.0,
    hold_deltas=200,
    load_processes=1,
)


def paced_verdict(app_busy: float) -> str:
    results = verdicts([paced("direct", 1.4, 0.2), paced("app", 67.0, app_busy)], PLAN)
    [line] = [v.line() for v in results if v.name.startswith("app added TTFD")]
    return line


def test_a_saturated_server_is_named_beside_its_figure() -> None:
    line = paced_verdict(0.98)
    assert line.startswith("FAIL")
    assert "+65.6 ms (the app process was 98% of a core busy: this load saturates it" in line


def test_a_server_with_room_gets_the_figure_alone() -> None:
    assert paced_verdict(0.55).endswith("= +65.6 ms")


def test_workers_are_saturated_when_every_one_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    assert paced_verdict(1.2).endswith("= +65.6 ms")
    assert "(2 app workers were 190% of a core busy" in paced_verdict(1.9)
