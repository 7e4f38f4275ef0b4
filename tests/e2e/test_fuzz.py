"""Fuzz every operation of the OpenAPI schema against the running app: no 5xx, no hang."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from testing.app_server import RunningApp

pytestmark = pytest.mark.e2e


def test_no_input_makes_the_server_fail_or_hang(offline_app: RunningApp) -> None:
    schema = schemathesis.openapi.from_url(f"{offline_app.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            # The timeout is the "no hang" check. Only server errors fail: the service rejects
            # some schema-valid bodies on purpose (e.g. a blank question) with a clear 422.
            case.call_and_validate(timeout=10, checks=[not_a_server_error])

        check()
