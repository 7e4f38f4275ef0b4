"""The chat page at ``GET /`` and its static files, over HTTP in process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from api.page import ASSET_CACHE, ASSET_TYPES, PAGE_CACHE, PAGE_CSP, STATIC_DIR
from bootstrap import create_app
from settings import PROJECT_ROOT, Settings
from tests.fakes import InMemoryConversations, ScriptedEngine, small_profile


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(
        Settings(_env_file=None, rate_limit_per_minute=0),  # type: ignore[call-arg]
        knowledge=small_profile(),
        engine=ScriptedEngine(),
        conversations=InMemoryConversations(),
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


class PageParts(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def page_parts(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    return parts


def test_the_page_is_html_under_a_strict_policy_of_its_own(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert "'unsafe-inline'" not in PAGE_CSP
    assert "'unsafe-eval'" not in PAGE_CSP
    assert "frame-ancestors 'none'" in PAGE_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == PAGE_CACHE
    assert "<textarea" in response.text


def test_the_page_loads_its_scripts_in_order_and_nothing_inline(client: TestClient) -> None:
    parts = page_parts(client.get("/").text)
    scripts = [attributes.get("src") for tag, attributes in parts.tags if tag == "script"]
    assert scripts == [
        "/static/i18n.js",
        "/static/sse.js",
        "/static/vendor/markdown-it/markdown-it.umd.min.js",
        "/static/vendor/dompurify/purify.min.js",
        "/static/markdown.js",
        "/static/chat.js",
    ]
    assert not [tag for tag, _ in parts.tags if tag == "style"]
    for tag, attributes in parts.tags:
        assert "style" not in attributes, tag
        assert not [name for name in attributes if name.startswith("on")], tag


def test_the_page_references_no_other_origin(client: TestClient) -> None:
    parts = page_parts(client.get("/").text)
    references = [
        value
        for _, attributes in parts.tags
        for name, value in attributes.items()
        if name in {"src", "href", "action", "srcset", "poster", "data"} and value
    ]
    assert references
    for reference in references:
        assert reference.startswith(("/static/", "#")), reference
        assert not reference.startswith("//"), reference
    # The vendored libraries are checked in test_vendored_libraries_are_the_pinned_versions.
    for name in ("index.html", *(name for name in ASSET_TYPES if not name.startswith("vendor/"))):
        code = without_comments((STATIC_DIR / name).read_text(encoding="utf-8"))
        # The SVG's XML namespace is a name, not a request.
        code = code.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|(?<![\\:])//[\w-]+\.", code), name
        assert "url(" not in code, name
        assert "@import" not in code, name


def without_comments(code: str) -> str:
    """CSS and JavaScript without their comments (which may cite a spec by its URL)."""
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.DOTALL)
    return re.sub(r"(^|\s)//\s.*$", "", code, flags=re.MULTILINE)


@pytest.mark.parametrize("name", sorted(ASSET_TYPES))
def test_static_files_are_served_with_their_type_and_a_short_cache(
    client: TestClient, name: str
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSET_TYPES[name]
    assert response.headers["cache-control"] == ASSET_CACHE
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (STATIC_DIR / name).read_bytes()


def test_an_unchanged_file_is_not_sent_again(client: TestClient) -> None:
    for path in ("/", "/static/chat.js"):
        first = client.get(path)
        etag = first.headers["etag"]
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
        assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_head_is_answered_for_cloudfront(client: TestClient) -> None:
    response = client.head("/static/chat.css")
    assert response.status_code == 200
    assert response.headers["content-type"] == ASSET_TYPES["chat.css"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/..%2Fpage.py",
        "/static/vendor/..%2F..%2Fpage.py",
        "/static/vendor/dompurify/LICENSE",
        "/static/index.html",
        "/static/",
    ],
)
def test_only_the_listed_files_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_page_is_not_part_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/static")]


def test_vendored_libraries_are_the_pinned_versions_with_their_licences() -> None:
    lock = json.loads((PROJECT_ROOT / "tools" / "vendor" / "package-lock.json").read_text())
    pinned = {
        name: lock["packages"][f"node_modules/{name}"]["version"]
        for name in ("markdown-it", "dompurify")
    }
    versions = (STATIC_DIR / "vendor" / "VERSIONS").read_text().split("\n")
    assert sorted(line for line in versions if line) == sorted(
        f"{name} {version}" for name, version in pinned.items()
    )
    vendored = [name for name in ASSET_TYPES if name.startswith("vendor/")]
    assert {name.split("/")[1] for name in vendored} == set(pinned)
    for name in vendored:
        library = (STATIC_DIR / name).parent
        assert (library / "LICENSE").read_text().strip(), library
    banner = (STATIC_DIR / "vendor" / "dompurify" / "purify.min.js").read_text()[:200]
    assert f"DOMPurify {pinned['dompurify']}" in banner
    # The page's CSP has no 'unsafe-eval': the libraries must not need it.
    for name in vendored:
        code = (STATIC_DIR / name).read_text()
        assert "new Function(" not in code, name
        assert not re.search(r"\beval\(", code), name
