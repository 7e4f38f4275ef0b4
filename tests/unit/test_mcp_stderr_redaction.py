"""What an outside MCP server writes to its standard error reaches the log without secrets."""

from __future__ import annotations

import pytest

from infrastructure.mcp_client import redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET https://x.test/api?access_token=abc123def&page=2", "abc123def"),
        ("GET https://x.test/api?page=2&sig=Zx9Yw8Vu7", "Zx9Yw8Vu7"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("connecting to postgres://app:hunter22@db:5432/app", "hunter22"),
        ("GITHUB_TOKEN=ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3 loaded", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3"),
        ("using key sk-proj-0123456789abcdefXYZ", "sk-proj-0123456789abcdefXYZ"),
        ('{"api_key": "plain-value-1"}', "plain-value-1"),
    ],
)
def test_a_secret_in_a_line_is_redacted_and_the_rest_kept(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned
    assert "[redacted]" in cleaned


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    assert redact("login as octo with s3cr3t-value ok", ["s3cr3t-value"]) == (
        "login as octo with [redacted] ok"
    )


def test_an_ordinary_line_is_left_alone_but_control_characters_and_length_are_not() -> None:
    assert redact("Starting server on stdio (12 tools)") == "Starting server on stdio (12 tools)"
    assert redact("\x1b[31mred\x1b[0m") == "[31mred[0m"
    assert len(redact("x" * 5_000)) == 1_001
