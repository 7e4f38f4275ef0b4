"""Configuration from the environment and ``.env``; nonsense is rejected at start-up."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

PROJECT_ROOT = Path(__file__).resolve().parent
SAMPLE_PROFILE_DIR = PROJECT_ROOT / "sample_profile"

EngineChoice = Literal["auto", "offline", "responses", "agents"]
CommaSeparated = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Every setting, named as its environment variable (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4.1-mini"
    allowed_models: CommaSeparated = ()
    engine: EngineChoice = "auto"
    knowledge_dir: Path = SAMPLE_PROFILE_DIR
    knowledge_watch: bool = True  # rebuild the index when KNOWLEDGE_DIR changes
    max_input_chars: int = Field(default=4000, ge=1, le=100_000)
    max_output_tokens: int = Field(default=800, ge=16, le=32_000)
    cors_origins: CommaSeparated = ()
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Server processes on the one port (uvicorn's workers): one per core the app may use.
    web_concurrency: int = Field(default=1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    upstream_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    upstream_idle_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    upstream_max_retries: int = Field(default=2, ge=0, le=10)
    # One connection per open answer: this caps the answers streaming at once.
    upstream_max_connections: int = Field(default=2000, ge=1, le=100_000)
    sse_ping_seconds: float = Field(default=15.0, gt=0, le=25)
    sse_send_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    database_url: str = "sqlite+aiosqlite:///data/ask-the-applicant.db"
    migrate_on_start: bool = True
    history_budget_chars: int = Field(default=12_000, ge=0, le=1_000_000)
    admin_token: SecretStr | None = None
    conversation_retention_days: int = Field(default=90, ge=0, le=36_500)
    # Every statement, connection and pool checkout: a frozen database is a 503, not a hang.
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # Answers the database could not take when their stream ended, kept until it can.
    answer_spool: Path = Path("data/answer-spool.sqlite3")
    # Holding up in public: abuse limits, upstream faults, shutdown, observability.
    rate_limit_per_minute: int = Field(default=20, ge=0, le=100_000)
    trusted_proxies: CommaSeparated = ()
    # What the TRUSTED_PROXIES are: only CloudFront's own header is believed from CloudFront.
    trusted_proxy_kind: Literal["generic", "cloudfront"] = "generic"
    redis_url: str | None = None
    # Each Redis call; after a failure every Redis client skips Redis this long (one breaker).
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    redis_retry_after_seconds: float = Field(default=10.0, gt=0, le=3600)
    daily_token_budget: int = Field(default=0, ge=0)
    upstream_total_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    fallback_to_offline: bool = True
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=600)
    # How long an answer whose client went away goes on, waiting for a resume; 0: no resume.
    resume_window_seconds: float = Field(default=15.0, ge=0, le=600)
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10_000_000)
    # From the first read of a request's body to its last byte; a body that stalls or trickles
    # longer gets 408 and the connection is closed.
    request_body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    log_format: Literal["json", "text"] = "json"
    # Answers the applicant can trust: retrieval.
    semantic_search: bool = True
    embedding_model: str = "text-embedding-3-small"
    semantic_min_similarity: float = Field(default=0.35, ge=0.0, le=1.0)
    embeddings_cache: Path = Path("data/embeddings.sqlite3")
    # The longest a question waits for its embedding before lexical search answers alone.
    semantic_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    # Agents SDK orchestration and MCP.
    guardrails: Literal["heuristic", "model", "off"] = "heuristic"
    # Clear questions start at their specialist, without the triage model (domain/routing.py).
    agents_direct_routing: bool = True
    mcp_servers: Path | None = None
    openai_agents_tracing: bool = False
    mcp_server_enabled: bool = True

    @field_validator("allowed_models", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator(
        "openai_api_key",
        "openai_base_url",
        "admin_token",
        "redis_url",
        "mcp_servers",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "trusted_proxy_kind", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("knowledge_dir")
    @classmethod
    def _knowledge_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(
                f"KNOWLEDGE_DIR {value} is not a folder with the applicant's documents"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://", "mysql+asyncmy://")
        ):
            raise ValueError(
                "DATABASE_URL must start with sqlite+aiosqlite://, postgresql+asyncpg:// "
                "or mysql+asyncmy://"
            )
        charset = parse_qs(urlsplit(value).query).get("charset", ["utf8mb4"])
        if value.startswith("mysql+") and charset != ["utf8mb4"]:
            raise ValueError(
                "DATABASE_URL: MySQL needs charset=utf8mb4 (Korean and emoji); "
                "leave charset out or set it to utf8mb4"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"TRUSTED_PROXIES: {network!r} is not an IP address or CIDR network"
                ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value

    @field_validator("mcp_servers")
    @classmethod
    def _mcp_servers_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"MCP_SERVERS {value} is not a file (JSON or YAML list of servers)")
        return value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("ADMIN_TOKEN must be at least 16 characters long")
        return value

    @model_validator(mode="after")
    def _cloudfront_needs_its_addresses(self) -> Settings:
        if self.trusted_proxy_kind == "cloudfront" and not self.trusted_proxies:
            raise ValueError(
                "TRUSTED_PROXY_KIND=cloudfront needs TRUSTED_PROXIES: the addresses CloudFront "
                "connects from (its origin-facing ranges, see docs/deploy.md)"
            )
        return self

    @model_validator(mode="after")
    def _responses_needs_an_endpoint(self) -> Settings:
        if self.engine in ("responses", "agents") and not (
            self.openai_api_key or self.openai_base_url
        ):
            raise ValueError(
                f"ENGINE={self.engine} needs OPENAI_API_KEY (or OPENAI_BASE_URL of a Responses "
                "API server); use ENGINE=offline to answer without a model"
            )
        return self

    @model_validator(mode="after")
    def _workers_share_what_a_process_keeps(self) -> Settings:
        if self.web_concurrency == 1:
            return self
        if self.redis_url is None:
            raise ValueError(
                f"WEB_CONCURRENCY={self.web_concurrency} needs REDIS_URL: the workers share "
                "answers in flight (resume, Stop), rate limits and the daily token budget "
                "through Redis; set REDIS_URL or WEB_CONCURRENCY=1"
            )
        if make_url(self.database_url).get_backend_name() == "sqlite" and not sqlite_file(
            self.database_url
        ):
            raise ValueError(
                f"WEB_CONCURRENCY={self.web_concurrency} needs a database the workers share: "
                "an in-memory SQLite database is one per process; give DATABASE_URL a file"
            )
        return self

    @property
    def resolved_engine(self) -> Literal["offline", "responses", "agents"]:
        if self.engine != "auto":
            return self.engine
        return "responses" if self.openai_api_key or self.openai_base_url else "offline"

    @property
    def allowed_model_set(self) -> frozenset[str]:
        return frozenset(self.allowed_models) | {self.openai_model}


def sqlite_file(database_url: str | URL) -> str | None:
    """The file a SQLite DATABASE_URL names; ``None`` for another database or an in-memory
    one (which each process, and each connection, has to itself)."""
    url = make_url(database_url)
    database = url.database
    in_memory = not database or database == ":memory:" or url.query.get("mode") == "memory"
    return None if url.get_backend_name() != "sqlite" or in_memory else database
