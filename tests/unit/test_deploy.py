"""What docker-compose.yml runs: a read-only root, with a writable place for every file the
app writes (a missing one stopped the app at start-up with "unable to open database file")."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import yaml

from settings import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
SQLITE_PREFIX = "sqlite+aiosqlite:///"


def app_service() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    service: dict[str, Any] = compose["services"]["app"]
    return service


def working_directory() -> PurePosixPath:
    """The runtime image's WORKDIR: where the app's relative paths point."""
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    return PurePosixPath(workdirs[-1])


def files_the_app_writes() -> list[PurePosixPath]:
    """Every file the app writes with the default settings, as the container sees it."""
    fields = Settings.model_fields
    database = str(fields["database_url"].default).removeprefix(SQLITE_PREFIX)
    relative = [str(fields["embeddings_cache"].default), database]
    # A path in the container (its tmpfs), not a temporary file of the test.
    temporary = PurePosixPath("/tmp/any")  # noqa: S108
    return [working_directory() / path for path in relative] + [temporary]


def writable_places(service: dict[str, Any]) -> list[PurePosixPath]:
    places = []
    for volume in service.get("volumes", []):
        target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
        places.append(PurePosixPath(target))
    for tmpfs in service.get("tmpfs", []):
        places.append(PurePosixPath(tmpfs.split(":")[0]))
    return places


def test_every_file_the_app_writes_has_a_writable_place_under_a_read_only_root() -> None:
    service = app_service()
    assert service["read_only"] is True
    places = writable_places(service)
    unwritable = [
        str(path)
        for path in files_the_app_writes()
        if not any(path.is_relative_to(place) for place in places)
    ]
    assert unwritable == []


def test_the_data_volume_is_a_named_volume_that_survives_a_new_container() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    data = [v for v in app_service()["volumes"] if str(v).endswith(":/app/data")]
    assert len(data) == 1
    name = str(data[0]).split(":")[0]
    assert name in compose["volumes"]


def test_the_image_gives_the_data_folder_to_the_apps_user() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    data = working_directory() / "data"
    assert re.search(rf"install -d -o app -g app (-m [0-7]+ )?{data}$", dockerfile, re.M)
    assert "USER 10001:10001" in dockerfile
