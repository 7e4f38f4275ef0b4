"""/docs and /redoc load nothing from another origin: their assets are a package's files,
served by the app, under a policy that allows scripts from this origin only."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from bootstrap import create_app
from settings import Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile

_REFERENCE = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']""")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(
        Settings(_env_file=None),  # type: ignore[call-arg]
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_page_references_only_same_origin_assets_and_each_is_served(
    client: TestClient, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    references = _REFERENCE.findall(response.text)
    assert references, "the page loads its scripts from somewhere"
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
    assert "http://" not in response.text
    assert "https://" not in response.text  # no CDN, no web fonts
    for reference in references:
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference
    assert any(reference.endswith(".js") for reference in references)


@pytest.mark.parametrize(
    ("name", "media_type", "starts"),
    [
        ("swagger-ui-bundle.js", "text/javascript", b""),
        ("swagger-ui.css", "text/css", b""),
        ("redoc.standalone.js", "text/javascript", b"/*! For license information"),
        ("favicon.png", "image/png", b"\x89PNG"),
    ],
)
def test_the_assets_are_the_packages_files_with_their_types(
    client: TestClient, name: str, media_type: str, starts: bytes
) -> None:
    asset = client.get(f"/docs-assets/{name}")
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith(media_type)
    assert asset.content.startswith(starts)
    assert len(asset.content) > 1000
    assert "max-age" in asset.headers["cache-control"]


@pytest.mark.parametrize("name", ["core.py", "..%2F__init__.py", "index.html", "LICENSE"])
def test_nothing_else_of_the_package_is_served(client: TestClient, name: str) -> None:
    assert client.get(f"/docs-assets/{name}").status_code == 404


def test_the_policy_allows_this_origins_scripts_and_the_pages_own_start_up_script_only(
    client: TestClient,
) -> None:
    docs = client.get("/docs")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in docs.headers["content-security-policy"].split(";")
    )
    inline = _INLINE_SCRIPT.findall(docs.text)
    assert len(inline) == 1  # Swagger UI's configuration
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    redoc = client.get("/redoc").headers["content-security-policy"]
    assert "script-src 'self';" in redoc  # ReDoc's page has no inline script


def test_the_schema_lists_neither_page(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/docs", "/redoc")) for path in paths)
