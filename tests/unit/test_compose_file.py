"""What docker-compose.yml runs, read as compose reads it (no Docker engine on the test
machines): the MySQL profile is the app as it is, on MySQL instead of PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from settings import Settings

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded["services"]


def interpolated(value: str, variables: dict[str, str]) -> str:
    """compose's ``${NAME:-default}`` and ``${NAME:?message}``, with ``variables`` as .env."""

    def substitute(found: re.Match[str]) -> str:
        name, operator, word = found[1], found[2], found[3]
        if variables.get(name):
            return variables[name]
        assert operator != ":?", f"{name} is required: {word}"
        return word or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)


def test_the_mysql_profile_runs_the_same_app_on_mysql() -> None:
    app, on_mysql = services()["app"], services()["app-mysql"]
    assert "profiles" not in app, "`docker compose up` alone still runs the app on PostgreSQL"
    assert on_mysql["profiles"] == ["mysql"]
    differing = {key for key in app.keys() | on_mysql.keys() if app.get(key) != on_mysql.get(key)}
    # Its own data volume too: a spooled answer belongs to the database it is written back to.
    assert differing == {"profiles", "environment", "depends_on", "volumes"}
    assert on_mysql["depends_on"] == {"mysql": {"condition": "service_healthy"}}
    assert {k: v for k, v in on_mysql["environment"].items() if k != "DATABASE_URL"} == {
        k: v for k, v in app["environment"].items() if k != "DATABASE_URL"
    }


def test_the_mysql_url_is_one_the_app_accepts_for_the_database_compose_creates() -> None:
    env = {"MYSQL_PASSWORD": "0123abcd", "POSTGRES_PASSWORD": "x"}
    url = interpolated(services()["app-mysql"]["environment"]["DATABASE_URL"], env)
    assert url == "mysql+asyncmy://ask:0123abcd@mysql:3306/ask"
    assert Settings(_env_file=None, database_url=url).database_url == url  # type: ignore[call-arg]
    mysql = services()["mysql"]
    created = {name: interpolated(value, env) for name, value in mysql["environment"].items()}
    assert (created["MYSQL_USER"], created["MYSQL_PASSWORD"], created["MYSQL_DATABASE"]) == (
        "ask",
        "0123abcd",
        "ask",
    )


def test_mysql_is_reachable_only_from_the_app() -> None:
    mysql = services()["mysql"]
    assert mysql["profiles"] == ["mysql"]
    assert "ports" not in mysql
    assert mysql["networks"] == ["database"]
    assert "mysql-data:/var/lib/mysql" in mysql["volumes"]


def test_every_app_service_writes_its_data_to_a_volume_of_its_own() -> None:
    """The root is read-only: the answer spool and the embeddings cache (under /app/data)
    need a volume, and an app on another database a spool of its own."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    mounts = {}
    for name in ("app", "app-mysql"):
        service = services[name]
        assert service["read_only"] is True
        [mount] = [v for v in service["volumes"] if v.endswith(":/app/data")]
        mounts[name] = mount.partition(":")[0]
    assert len(set(mounts.values())) == 2
