"""The API's documentation pages (/docs, /redoc) in a real browser, with nothing but the app's
own origin reachable: every asset comes from the app (a package's files), and the pages'
Content-Security-Policy lets them run. Debian's Chromium, as in ``test_chat_page.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from testing.app_server import RunningApp, run_app
from tests.browser.test_chat_page import CHROMIUM_ARGS, chromium  # noqa: F401 - a fixture

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    database = tmp_path_factory.mktemp("docs") / "conversations.db"
    environment = {"ENGINE": "offline", "DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    with run_app(environment) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:  # noqa: F811 - the imported fixture
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def offline_tab(browser: Browser, app: RunningApp) -> Iterator[tuple[Page, list[str]]]:
    """A tab that can reach the app alone; the list collects what went wrong (script errors,
    CSP violations, requests to anywhere else)."""
    context = browser.new_context(base_url=app.base_url)
    context.set_default_timeout(15_000)
    problems: list[str] = []

    def only_the_app(route: Route) -> None:
        url = route.request.url
        if url.startswith(app.base_url + "/") or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            problems.append(f"request to another origin: {url}")
            route.abort()

    context.route("**/*", only_the_app)
    tab = context.new_page()
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    tab.on("console", on_console)
    yield tab, problems
    context.close()


def test_swagger_ui_renders_every_operation_from_the_apps_own_assets(
    offline_tab: tuple[Page, list[str]],
) -> None:
    tab, problems = offline_tab
    tab.goto("/docs")
    expect(tab.locator(".opblock-summary-path", has_text="/openai-response/sse")).to_be_visible()
    expect(
        # GET, and the stream's GET and DELETE (resume, stop).
        tab.locator(".opblock-summary-path", has_text="/conversations/{conversation_id}").first
    ).to_be_visible()
    expect(
        tab.locator(".opblock-summary-path", has_text="/conversations/{conversation_id}/stream")
    ).to_have_count(2)
    assert problems == []


def test_redoc_renders_the_api_from_the_apps_own_assets(
    offline_tab: tuple[Page, list[str]],
) -> None:
    tab, problems = offline_tab
    tab.goto("/redoc")
    expect(tab.get_by_role("heading", name="Ask the Applicant")).to_be_visible()
    expect(tab.get_by_text("/openai-response/sse").first).to_be_attached()
    # ReDoc's sidebar asks for its maker's logo from a CDN (and hides it when that fails): the
    # page's policy stops it before any request leaves, as it is meant to.
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    blocked = [p for p in problems if logo in p and "Content Security Policy" in p]
    assert [p for p in problems if p not in blocked] == []
