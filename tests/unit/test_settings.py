from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from settings import SAMPLE_PROFILE_DIR, Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_answer_offline_from_the_sample_profile() -> None:
    default = settings()
    assert default.resolved_engine == "offline"
    assert default.knowledge_dir == SAMPLE_PROFILE_DIR
    assert default.max_input_chars == 4000
    assert default.host == "127.0.0.1"
    assert default.port == 8000


@pytest.mark.parametrize(
    ("values", "engine"),
    [
        ({"openai_api_key": "sk-x"}, "responses"),
        ({"openai_base_url": "http://127.0.0.1:9/v1"}, "responses"),
        ({"openai_api_key": "  "}, "offline"),
        ({"openai_api_key": "sk-x", "engine": "offline"}, "offline"),
    ],
)
def test_auto_engine_follows_the_credentials(values: dict[str, Any], engine: str) -> None:
    assert settings(**values).resolved_engine == engine


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_MODELS", "gpt-a, gpt-b,,")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    loaded = settings()
    assert loaded.allowed_models == ("gpt-a", "gpt-b")
    assert loaded.allowed_model_set == {"gpt-a", "gpt-b", "gpt-4.1-mini"}
    assert loaded.cors_origins == ("https://a.example", "https://b.example")


def test_key_is_secret_in_reprs() -> None:
    loaded = settings(openai_api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(loaded)
    assert "sk-very-secret" not in str(loaded.model_dump())


def test_responses_engine_without_an_endpoint_is_refused() -> None:
    with pytest.raises(ValidationError, match="ENGINE=responses needs OPENAI_API_KEY"):
        settings(engine="responses")


def test_missing_knowledge_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="KNOWLEDGE_DIR"):
        settings(knowledge_dir=tmp_path / "nope")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///data/a.db",
        "postgresql+asyncpg://ask:pw@db:5432/ask",
        "mysql+asyncmy://ask:pw@db:3306/ask",
        "mysql+asyncmy://ask:pw@db:3306/ask?charset=utf8mb4",
    ],
)
def test_each_supported_database_url_is_accepted(url: str) -> None:
    assert settings(database_url=url).database_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+aiomysql://ask:pw@db/ask", "must start with"),
        ("mysql://ask:pw@db/ask", "must start with"),
        ("mysql+asyncmy://ask:secret-pw@db/ask?charset=utf8", "MySQL needs charset=utf8mb4"),
    ],
)
def test_an_unsupported_database_url_is_refused_naming_the_variable(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL") as refused:
        settings(database_url=url)
    assert message in str(refused.value)


def test_cloudfront_proxy_kind_without_its_addresses_is_refused() -> None:
    with pytest.raises(
        ValidationError, match="TRUSTED_PROXY_KIND=cloudfront needs TRUSTED_PROXIES"
    ):
        settings(trusted_proxy_kind="cloudfront")
    assert (
        settings(trusted_proxy_kind="CloudFront", trusted_proxies="10.0.0.0/8").trusted_proxy_kind
        == "cloudfront"
    )


def test_resume_window_defaults_to_15_seconds_and_refuses_a_negative_one() -> None:
    assert settings().resume_window_seconds == 15
    assert settings(resume_window_seconds="0").resume_window_seconds == 0
    with pytest.raises(ValidationError, match="resume_window_seconds"):
        settings(resume_window_seconds="-1")


REDIS = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"web_concurrency": 2}, "WEB_CONCURRENCY=2 needs REDIS_URL"),
        (
            {"web_concurrency": 2, "redis_url": REDIS, "database_url": "sqlite+aiosqlite://"},
            "in-memory SQLite database is one per process",
        ),
        (
            {
                "web_concurrency": 2,
                "redis_url": REDIS,
                "database_url": "sqlite+aiosqlite:///file:shared?mode=memory&cache=shared&uri=true",
            },
            "in-memory SQLite database is one per process",
        ),
        ({"web_concurrency": 0}, "web_concurrency"),
    ],
)
def test_workers_need_what_they_share(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


@pytest.mark.parametrize(
    "database_url",
    [
        "sqlite+aiosqlite:///data/ask-the-applicant.db",
        "postgresql+asyncpg://ask@127.0.0.1:5432/ask",
        "mysql+asyncmy://ask@127.0.0.1:3306/ask",
    ],
)
def test_workers_share_redis_and_a_database(database_url: str) -> None:
    workers = settings(web_concurrency=4, redis_url=REDIS, database_url=database_url)
    assert workers.web_concurrency == 4
    assert settings().web_concurrency == 1
