"""The chat page in a real browser: Debian's headless Chromium driven by Playwright.

The app runs under uvicorn against the fake Responses API, which paces its deltas like a
model, so the page is seen streaming, following up, stopping and failing as a recruiter
would see it. The page's own SSE parser and markdown renderer are tested inside the same
browser (``page.evaluate``), so no JavaScript test runner is needed.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (Debian's
``chromium`` package; ``.ci/run`` installs it). Without it the tests are skipped, except in
CI (``CI=true``), where they fail. ``SAVE_SCREENSHOTS=1`` also writes the screenshot to
``docs/images/chat-page.png`` (install ``fonts-noto-cjk`` first, or Korean shows as boxes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from testing.app_server import PROJECT_ROOT, RunningApp, run_app
from testing.fake_responses_api import (
    RunningFake,
    Scenario,
    run_fake_responses_api,
    split_into_deltas,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
SSE_PATH = "/openai-response/sse"
MAX_INPUT_CHARS = 500
DOCS_SCREENSHOT = PROJECT_ROOT / "docs" / "images" / "chat-page.png"

FIRST_ANSWER = """\
## 결제 플랫폼 마이그레이션

김민지의 가장 큰 성과는 **한빛페이 결제 플랫폼 마이그레이션**의 기술 리드를 맡은 것입니다 [1].
Python/Django 모놀리스를 Amazon EKS 위의 Go 서비스로 *무중단* 전환했습니다.

- p99 지연 시간: 820ms → 210ms
- 가용성: 99.9% → 99.99%
- 인프라 비용 31% 절감

이 프로젝트로 2022년 `올해의 엔지니어` 상을 받았습니다 [1]."""
FOLLOW_UP_ANSWER = """\
그 전에는 2018년 7월부터 2020년 12월까지 **소라물류**에서 백엔드 엔지니어로 일했습니다.
배차 계산 시간을 12초에서 1.5초로 줄였습니다."""


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = (
            f"Chromium is not installed at {CHROMIUM}: run `apt-get install chromium` "
            "(or set CHROMIUM_PATH) to run the browser tests"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningFake]:
    with run_fake_responses_api() as fake:
        yield fake


@pytest.fixture(scope="module")
def app(upstream: RunningFake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    database = tmp_path_factory.mktemp("browser") / "conversations.db"
    environment = {
        "OPENAI_API_KEY": "sk-test-browser-0123456789",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_MODEL": "gpt-fake",
        "UPSTREAM_MAX_RETRIES": "0",
        "SEMANTIC_SEARCH": "false",
        "FALLBACK_TO_OFFLINE": "false",
        "KNOWLEDGE_WATCH": "false",
        "MAX_INPUT_CHARS": str(MAX_INPUT_CHARS),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }
    with run_app(environment) as running:
        yield running


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    playwright: Playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class OpenTab(Protocol):
    def __call__(
        self,
        *,
        locale: str = "en-US",
        viewport: ViewportSize | None = None,
        languages: list[str] | None = None,
    ) -> Page: ...


@pytest.fixture
def open_tab(browser: Browser, app: RunningApp, upstream: RunningFake) -> Iterator[OpenTab]:
    """Opens fresh tabs on the chat page, each in a new browser profile (nothing stored), with
    the browser's language (``locale``, or the whole ``navigator.languages``) and its window;
    fails the test on any script error or CSP violation."""
    upstream.api.reset()
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Failed requests the tests provoke on purpose are logged too; nothing else may be.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(f"console error: {message.text}")

    def open_one(
        *,
        locale: str = "en-US",
        viewport: ViewportSize | None = None,
        languages: list[str] | None = None,
    ) -> Page:
        context = browser.new_context(
            base_url=app.base_url, viewport=viewport or {"width": 960, "height": 900}, locale=locale
        )
        contexts.append(context)
        context.set_default_timeout(10_000)
        if languages is not None:
            listed = json.dumps(languages)
            context.add_init_script(
                f"Object.defineProperty(navigator, 'languages', {{ get: () => {listed} }});"
            )
        tab = context.new_page()
        tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        tab.on("console", on_console)
        tab.goto("/")
        return tab

    yield open_one
    upstream.api.release_stalled_streams()
    for context in contexts:
        context.close()
    assert problems == []


@pytest.fixture
def page(open_tab: OpenTab) -> Page:
    """A fresh tab on the chat page, its interface in English."""
    return open_tab()


@pytest.fixture(scope="module")
def script_page(browser: Browser, app: RunningApp) -> Iterator[Page]:
    """One tab on the chat page for the tests of its scripts, which change nothing on it."""
    context = browser.new_context(base_url=app.base_url)
    tab = context.new_page()
    tab.goto("/")
    yield tab
    context.close()


def press_enter_while_composing(page: Page, how: str) -> None:
    """Dispatch the keydown an IME sends when Enter confirms a composition (no real IME here)."""
    page.evaluate(
        """(how) => {
            const init = { key: "Enter", code: "Enter", bubbles: true, cancelable: true };
            if (how === "isComposing") init.isComposing = true;
            else init.keyCode = 229;
            document.getElementById("question").dispatchEvent(new KeyboardEvent("keydown", init));
        }""",
        how,
    )


def watch_answer_growth(page: Page) -> None:
    """Record the last answer's text length at every DOM change, with its state."""
    page.evaluate(
        """() => {
            window.answerGrowth = [];
            new MutationObserver(() => {
                const answers = document.querySelectorAll(".message.assistant");
                const last = answers[answers.length - 1];
                if (!last) return;
                const text = last.querySelector(".answer").textContent;
                window.answerGrowth.push([text.length, last.dataset.state]);
            }).observe(document.getElementById("log"),
                       { subtree: true, childList: true, characterData: true, attributes: true });
        }"""
    )


def sse_requests(page: Page) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda request: (
            bodies.append(request.post_data_json) if request.url.endswith(SSE_PATH) else None
        ),
    )
    return bodies


def test_a_korean_conversation_streams_follows_up_and_stops(
    page: Page, app: RunningApp, upstream: RunningFake, tmp_path: Path
) -> None:
    sent = sse_requests(page)
    question = page.get_by_role("textbox", name="Your question")
    upstream.api.enqueue(
        Scenario(deltas=split_into_deltas(FIRST_ANSWER, 3), delay_between_deltas=0.008),
        Scenario(deltas=split_into_deltas(FOLLOW_UP_ANSWER, 3), delay_between_deltas=0.005),
        Scenario(deltas=["첫 번째 ", "부분만 ", "보냅니다."], terminal="stall", stall_seconds=30),
    )

    # Typing Korean: Enter that confirms the IME composition must not send; Shift+Enter is
    # a new line; Enter sends.
    question.click()
    page.keyboard.insert_text("김민지의 가장 큰 성과는")
    press_enter_while_composing(page, "isComposing")
    press_enter_while_composing(page, "keyCode229")
    assert question.input_value() == "김민지의 가장 큰 성과는"
    page.keyboard.press("Shift+Enter")
    page.keyboard.insert_text("무엇인가요?")
    assert question.input_value() == "김민지의 가장 큰 성과는\n무엇인가요?"
    assert page.locator(".message").count() == 0
    assert sent == []

    watch_answer_growth(page)
    page.keyboard.press("Enter")
    expect(question).to_have_value("")
    first = page.locator(".message.assistant").nth(0)
    expect(first).to_have_attribute("data-state", "done")
    assert sent == [{"input": "김민지의 가장 큰 성과는\n무엇인가요?"}]
    expect(page.locator(".message.user").nth(0)).to_have_text(
        "김민지의 가장 큰 성과는\n무엇인가요?"
    )

    # The answer grew in several steps before it was done.
    growth: list[list[Any]] = page.evaluate("window.answerGrowth")
    streaming = sorted({length for length, state in growth if state == "streaming" and length})
    assert len(streaming) >= 3, growth

    # Rendered as markdown, line breaks included, from text nodes only.
    answer = first.locator(".answer")
    expect(answer.locator("h4")).to_have_text("결제 플랫폼 마이그레이션")
    expect(answer.locator("strong")).to_have_text("한빛페이 결제 플랫폼 마이그레이션")
    expect(answer.locator("em")).to_have_text("무중단")
    expect(answer.locator("li")).to_have_text(
        ["p99 지연 시간: 820ms → 210ms", "가용성: 99.9% → 99.99%", "인프라 비용 31% 절감"]
    )
    expect(answer.locator("code")).to_have_text("올해의 엔지니어")
    assert answer.locator("p").first.inner_text() == (
        "김민지의 가장 큰 성과는 한빛페이 결제 플랫폼 마이그레이션의 기술 리드를 맡은 것입니다 "
        "[1].\nPython/Django 모놀리스를 Amazon EKS 위의 Go 서비스로 무중단 전환했습니다."
    )
    # Sources are listed, and the citations link to them.
    sources = first.locator(".sources-list li")
    assert sources.count() >= 1
    expect(first.locator(".sources-title")).to_have_text("Sources")
    citation = answer.locator("a.citation").first
    expect(citation).to_have_text("1")
    target = citation.get_attribute("href")
    assert target is not None
    expect(page.locator(target)).to_be_visible()

    # A follow-up: the same conversation, only the new question.
    question.fill("그 전에는 어디서 일했나요?")
    question.press("Enter")
    second = page.locator(".message.assistant").nth(1)
    expect(second).to_have_attribute("data-state", "done")
    assert len(sent) == 2
    conversation_id = sent[1]["conversation_id"]
    assert sent[1] == {"input": "그 전에는 어디서 일했나요?", "conversation_id": conversation_id}
    stored = app.stored_messages(conversation_id)
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "completed"),
        ("assistant", "completed"),
    ] * 2
    assert stored[1]["content"] == FIRST_ANSWER  # what streamed is what was rendered above
    assert stored[3]["content"] == FOLLOW_UP_ANSWER
    assert second.locator(".answer p").inner_text() == FOLLOW_UP_ANSWER.replace("**", "")
    screenshot(page, tmp_path)

    # Stop: the partial answer stays, and the server stores it as interrupted.
    question.fill("요즘 어떤 일을 하나요?")
    question.press("Enter")
    third = page.locator(".message.assistant").nth(2)
    expect(third.locator(".answer")).to_have_text("첫 번째 부분만 보냅니다.")
    page.get_by_role("button", name="Stop").click()
    expect(third).to_have_attribute("data-state", "stopped")
    expect(third.locator(".ending")).to_have_text("Stopped.")
    expect(third.locator(".answer")).to_have_text("첫 번째 부분만 보냅니다.")
    expect(question).to_be_focused()
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert upstream.api.wait_for(lambda: upstream.api.closed_by_client == 1)
    stored = app.wait_for_messages(conversation_id, 6)
    assert (stored[5]["content"], stored[5]["status"]) == (
        "첫 번째 부분만 보냅니다.",
        "interrupted",
    )

    # A new conversation sends no conversation_id.
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(".message")).to_have_count(0)
    expect(page.locator("#welcome")).to_be_visible()
    page.get_by_role("button", name="어떤 프로젝트를 했나요?").click()
    expect(page.locator(".message.assistant")).to_have_attribute("data-state", "done")
    assert sent[3] == {"input": "어떤 프로젝트를 했나요?"}


def screenshot(page: Page, tmp_path: Path) -> None:
    """The whole conversation as a recruiter sees it (tall enough not to scroll), and on a phone."""
    path = tmp_path / "chat-page.png"
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 960, "height": height})
    page.screenshot(path=str(path))
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        DOCS_SCREENSHOT.write_bytes(path.read_bytes())
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "chat-page-mobile.png"))
    page.set_viewport_size({"width": 960, "height": 900})


def ask(page: Page, text: str) -> None:
    question = page.locator("#question")  # in either language
    question.fill(text)
    question.press("Enter")


def test_errors_are_explained_and_partial_answers_kept(page: Page, upstream: RunningFake) -> None:
    answers = page.locator(".message.assistant")

    # The model fails after some text: event: error mid-stream.
    upstream.api.enqueue(Scenario(deltas=["Minji led ", "the migr"], terminal="failed"))
    ask(page, "What did Minji lead?")
    expect(answers.nth(0)).to_have_attribute("data-state", "error")
    expect(answers.nth(0).locator(".answer")).to_have_text("Minji led the migr")
    expect(answers.nth(0).get_by_role("alert")).not_to_be_empty()

    # A 4xx from the server: its message is shown.
    ask(page, "x" * (MAX_INPUT_CHARS + 1))
    expect(answers.nth(1)).to_have_attribute("data-state", "error")
    expect(answers.nth(1).locator(".ending")).to_contain_text(str(MAX_INPUT_CHARS))

    # Rate limited: when to try again, from Retry-After.
    page.route(
        f"**{SSE_PATH}",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "17"},
            content_type="application/json",
            body=json.dumps({"code": "rate_limited", "message": "Too many questions."}),
        ),
    )
    ask(page, "Are you there?")
    expect(answers.nth(2).locator(".ending")).to_have_text(
        "Too many questions for now. Please try again in 17 seconds."
    )
    page.unroute(f"**{SSE_PATH}")

    # A proxy's HTML error page.
    page.route(
        f"**{SSE_PATH}",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>Bad</h1>"),
    )
    ask(page, "And now?")
    expect(answers.nth(3).locator(".ending")).to_contain_text("HTTP 502")
    page.unroute(f"**{SSE_PATH}")

    # The network is down.
    page.route(f"**{SSE_PATH}", lambda route: route.abort("connectionrefused"))
    ask(page, "Hello?")
    expect(answers.nth(4).locator(".ending")).to_have_text(
        "Could not reach the server. Check your connection and try again."
    )
    page.unroute(f"**{SSE_PATH}")

    # The page still works afterwards.
    ask(page, "Where does Minji work?")
    expect(answers.nth(5)).to_have_attribute("data-state", "done")
    expect(answers.nth(5).locator(".answer")).to_have_text("Hello from the fake Responses API.")


def test_notices_are_shown_as_notes(page: Page) -> None:
    stream = (
        'event: meta\ndata: {"conversation_id":"c1","model":"offline","mode":"offline"}\n\n'
        "event: sources\ndata: []\n\n"
        'event: notice\ndata: {"code":"answered_offline","message":"Answered from the '
        'documents.","mode":"offline","model":"offline"}\n\n'
        'event: agent\ndata: {"kind":"tool_call","name":"search_profile"}\n\n'
        "event: meta\ndata: null\n\nevent: future\ndata: not json\n\n"
        "data: Quoted\ndata: text\n\n"
        'event: done\ndata: {"usage":null,"finish_reason":"max_output_tokens"}\n\n'
    )
    page.route(
        f"**{SSE_PATH}",
        lambda route: route.fulfill(status=200, content_type="text/event-stream", body=stream),
    )
    ask(page, "hi")
    answer = page.locator(".message.assistant")
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".note")).to_have_text("Answered from the documents.")
    assert answer.locator(".answer p").inner_text() == "Quoted\ntext"
    expect(answer.locator(".sources")).to_be_hidden()
    expect(answer.locator(".ending")).to_have_text("The answer was cut short (max_output_tokens).")


def test_in_korean_the_server_notices_and_errors_are_translated_by_their_code(
    open_tab: OpenTab,
) -> None:
    korean = open_tab(locale="ko-KR")
    streams = [
        'event: meta\ndata: {"conversation_id":"c1","mode":"offline"}\n\n'
        'event: notice\ndata: {"code":"answered_offline","message":"The AI model could not be '
        "reached: this answer quotes the applicant's documents.\"}\n\n"
        "data: 부분\n\n"
        'event: error\ndata: {"code":"upstream_timeout","message":"The answering service took '
        'too long to respond. Please retry."}\n\n',
        'event: meta\ndata: {"conversation_id":"c1"}\n\n'
        'event: error\ndata: {"code":"some_future_code","message":"A message in English."}\n\n',
    ]
    korean.route(
        f"**{SSE_PATH}",
        lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=streams.pop(0)
        ),
    )
    ask(korean, "안녕하세요?")
    answers = korean.locator(".message.assistant")
    expect(answers.nth(0).locator(".note")).to_have_text(
        "AI 모델을 사용할 수 없어 지원자의 문서를 인용해 답합니다."
    )
    expect(answers.nth(0).locator(".ending")).to_have_text(
        "답변 서비스의 응답이 너무 늦습니다. 다시 시도해 주세요."
    )
    ask(korean, "다시 물어봅니다.")
    # A code the page does not know: the server's message, as it is.
    expect(answers.nth(1).locator(".ending")).to_have_text("A message in English.")
    korean.get_by_role("button", name="English").click()
    expect(answers.nth(0).locator(".note")).to_have_text(
        "The AI model could not be reached: this answer quotes the applicant's documents."
    )
    expect(answers.nth(0).locator(".ending")).to_have_text(
        "The answering service took too long to respond. Please retry."
    )


def rate_limited(route: Route) -> None:
    route.fulfill(
        status=429,
        headers={"Retry-After": "17"},
        content_type="application/json",
        body=json.dumps({"code": "rate_limited", "message": "Too many questions."}),
    )


def test_the_interface_speaks_the_browser_language_and_keeps_the_one_chosen(
    open_tab: OpenTab, upstream: RunningFake
) -> None:
    korean = open_tab(locale="ko-KR")
    expect(korean.locator("html")).to_have_attribute("lang", "ko")
    expect(korean).to_have_title("지원자에게 무엇이든 물어봐! · Ask the Applicant")
    question = korean.get_by_role("textbox", name="질문")
    expect(question).to_have_attribute("placeholder", "지원자에 대해 물어보세요…")
    expect(korean.get_by_role("button", name="보내기")).to_be_visible()
    expect(korean.get_by_role("button", name="새 대화")).to_be_visible()
    expect(korean.get_by_role("button", name="한국어")).to_have_attribute("aria-pressed", "true")
    expect(korean.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "false")
    expect(korean.locator("#keys")).to_have_text("Enter로 보내기 · Shift+Enter로 줄바꿈")

    # An answer, its sources and its status; then the page's own errors and the server's.
    upstream.api.enqueue(Scenario(deltas=["첫 번째 ", "부분만 ", "보냅니다."], terminal="stall"))
    ask(korean, "어떤 프로젝트를 했나요?")
    answers = korean.get_by_role("article", name="답변")
    expect(answers.nth(0).locator(".typing")).to_have_text("답변하는 중…")
    expect(answers.nth(0).locator(".answer")).to_have_text("첫 번째 부분만 보냅니다.")
    expect(answers.nth(0).locator(".sources-title")).to_have_text("출처")
    korean.get_by_role("button", name="중지").click()
    expect(answers.nth(0).locator(".ending")).to_have_text("중지했습니다.")
    expect(korean.locator("#status")).to_have_text("답변을 중지했습니다.")
    korean.route(f"**{SSE_PATH}", rate_limited)
    ask(korean, "지금 되나요?")
    expect(answers.nth(1).locator(".ending")).to_have_text(
        "질문이 너무 많습니다. 17초 후에 다시 시도해 주세요."
    )
    korean.unroute(f"**{SSE_PATH}")
    korean.route(f"**{SSE_PATH}", lambda route: route.abort("connectionrefused"))
    ask(korean, "지금은요?")
    expect(answers.nth(2).locator(".ending")).to_have_text(
        "서버에 연결할 수 없습니다. 인터넷 연결을 확인하고 다시 시도해 주세요."
    )
    korean.unroute(f"**{SSE_PATH}")
    ask(korean, "가" * (MAX_INPUT_CHARS + 1))
    expect(answers.nth(3).locator(".ending")).to_have_text(
        f"질문이 너무 깁니다({MAX_INPUT_CHARS + 1}자, 최대 {MAX_INPUT_CHARS}자). "
        "질문을 줄여 주세요."
    )
    expect(korean.locator("#status")).to_have_text("답변을 끝내지 못했습니다.")

    # The switch: everything on the page in English, what was shown before included.
    korean.get_by_role("button", name="English").click()
    expect(korean.locator("html")).to_have_attribute("lang", "en")
    expect(korean).to_have_title("Ask the Applicant · 지원자에게 무엇이든 물어봐!")
    expect(korean.get_by_role("textbox", name="Your question")).to_have_attribute(
        "placeholder", "Ask about the applicant…"
    )
    expect(korean.get_by_role("button", name="Send")).to_be_visible()
    answers = korean.get_by_role("article", name="Answer")
    expect(answers).to_have_count(4)
    expect(answers.nth(0).locator(".sources-title")).to_have_text("Sources")
    expect(answers.nth(0).locator(".ending")).to_have_text("Stopped.")
    expect(answers.nth(1).locator(".ending")).to_have_text(
        "Too many questions for now. Please try again in 17 seconds."
    )
    expect(answers.nth(3).locator(".ending")).to_contain_text(
        f"the limit is {MAX_INPUT_CHARS}"
    )  # the server's own message
    expect(korean.locator("#status")).to_have_text("The answer could not be completed.")

    # The choice is kept: it outweighs the browser's language from now on.
    korean.reload()
    expect(korean.locator("html")).to_have_attribute("lang", "en")
    expect(korean.get_by_role("button", name="English")).to_have_attribute("aria-pressed", "true")
    korean.get_by_role("button", name="한국어").click()
    korean.reload()
    expect(korean.get_by_role("button", name="보내기")).to_be_visible()

    # The first of the browser's languages that the page speaks; English when none is.
    second_choice = open_tab(locale="fr-FR", languages=["fr-FR", "ko-KR", "en"])
    expect(second_choice.locator("html")).to_have_attribute("lang", "ko")
    neither = open_tab(locale="de-DE", languages=["de-DE", "fr"])
    expect(neither.locator("html")).to_have_attribute("lang", "en")
    expect(neither.get_by_role("button", name="Send")).to_be_visible()


@pytest.mark.parametrize(
    ("question", "contact", "other_language"),
    [
        ("희망 연봉은 얼마인가요?", "이메일: minji.kim@example.com", "Email"),
        ("What are her salary expectations?", "Email: minji.kim@example.com", "이메일"),
    ],
)
def test_the_contact_block_is_in_the_language_of_the_question(
    page: Page, upstream: RunningFake, question: str, contact: str, other_language: str
) -> None:
    # Salary is a topic the sample profile's policy declines, with the contact: no model call.
    ask(page, question)
    answer = page.locator(".message.assistant")
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".answer")).to_contain_text(contact)
    expect(answer.locator(".answer")).not_to_contain_text(other_language)
    assert upstream.api.requests == []


def test_the_question_stays_in_the_box_after_an_error_ready_to_send_again(
    page: Page, upstream: RunningFake
) -> None:
    sent = sse_requests(page)
    question = page.get_by_role("textbox", name="Your question")
    answers = page.locator(".message.assistant")
    asked = "언제부터 출근할 수 있나요?\nWhen can she start?"

    page.route(f"**{SSE_PATH}", rate_limited)
    question.fill(asked)
    question.press("Enter")
    expect(answers.nth(0)).to_have_attribute("data-state", "error")
    expect(question).to_have_value(asked)
    page.unroute(f"**{SSE_PATH}")

    page.route(f"**{SSE_PATH}", lambda route: route.abort("connectionrefused"))
    question.press("Enter")  # as it is: the same question again
    expect(answers.nth(1)).to_have_attribute("data-state", "error")
    expect(question).to_have_value(asked)
    page.unroute(f"**{SSE_PATH}")

    # The model fails after some text: the question is back too.
    upstream.api.enqueue(Scenario(deltas=["She can ", "start"], terminal="failed"))
    question.press("Enter")
    expect(answers.nth(2)).to_have_attribute("data-state", "error")
    expect(question).to_have_value(asked)

    question.press("Enter")
    expect(answers.nth(3)).to_have_attribute("data-state", "done")
    expect(question).to_have_value("")
    assert [body["input"] for body in sent] == [asked] * 4

    # What the recruiter typed meanwhile is not replaced.
    upstream.api.enqueue(Scenario(deltas=["Partial"], terminal="stall"))
    ask(page, "Another question")
    expect(answers.nth(4).locator(".answer")).to_have_text("Partial")
    question.fill("typed while waiting")
    upstream.api.release_stalled_streams()
    expect(answers.nth(4)).to_have_attribute("data-state", "error")
    expect(question).to_have_value("typed while waiting")


LONG_ANSWER = "\n\n".join(
    ["## 김민지의 경력 요약"]
    + [
        f"{year}년: 한빛페이와 소라물류에서 결제 플랫폼, 배차 시스템, 쿠버네티스 인프라를 "
        f"맡아 지연 시간을 줄이고 비용을 절감했습니다 [1]."
        for year in range(2005, 2027)
    ]
)


def test_on_a_phone_a_finished_answer_is_shown_from_its_first_line(
    open_tab: OpenTab, upstream: RunningFake
) -> None:
    phone = open_tab(locale="ko-KR", viewport={"width": 390, "height": 844})
    upstream.api.enqueue(
        Scenario(deltas=split_into_deltas(LONG_ANSWER, 8), delay_between_deltas=0.002)
    )
    ask(phone, "김민지의 경력을 자세히 알려 주세요.")
    answer = phone.locator(".message.assistant")
    expect(answer).to_have_attribute("data-state", "done")
    expect(answer.locator(".sources-list li").first).to_be_attached()

    answer_box = answer.bounding_box()
    first_line = answer.locator(".answer > :first-child").bounding_box()
    composer = phone.locator("#ask").bounding_box()
    assert answer_box is not None
    assert first_line is not None
    assert composer is not None
    assert answer_box["height"] > 844  # longer than the screen: it cannot all be in view
    # The first line is on screen, above the question box (positions are in the viewport).
    assert first_line["y"] >= 0
    assert first_line["y"] + first_line["height"] <= composer["y"]
    expect(answer.locator(".answer > :first-child")).to_have_text("김민지의 경력 요약")


HOSTILE_ANSWER = """\
<script>window.pwned = "script"</script>
<img src=x onerror="window.pwned = 'img'">
<svg onload="window.pwned = 'svg'"></svg><iframe src="javascript:window.pwned='iframe'"></iframe>
[click me](javascript:window.pwned='link') <a href="javascript:window.pwned='a'">raw</a>
[data](data:text/html,<script>window.pwned='data'</script>) <javascript:window.pwned='auto'>
**<b onmouseover="window.pwned='bold'">bold</b>** ![pixel](https://evil.example/pixel.png)
| <img src=x onerror="window.pwned='cell'"> | b |
|---|---|
| [ok](https://example.com/safe) | <style>body{display:none}</style> |
"""


def test_a_hostile_answer_is_shown_as_text_and_runs_nothing(
    page: Page, upstream: RunningFake
) -> None:
    upstream.api.enqueue(
        Scenario(deltas=split_into_deltas(HOSTILE_ANSWER, 5), delay_between_deltas=0.002)
    )
    ask(page, "What did Minji lead?")
    answer = page.locator(".message.assistant")
    expect(answer).to_have_attribute("data-state", "done")
    body = answer.locator(".answer")
    for tag in ("script", "img", "svg", "iframe", "style", "b"):
        expect(body.locator(tag)).to_have_count(0)
    found = page.evaluate(
        """() => {
            const body = document.querySelector(".message.assistant .answer");
            const nodes = [...body.querySelectorAll("*")];
            return {
                handlers: nodes.flatMap((node) => [...node.attributes])
                    .map((attribute) => attribute.name)
                    .filter((name) => name.startsWith("on") || name === "style" || name === "src"),
                links: [...body.querySelectorAll("a")].map((a) => a.getAttribute("href")),
                pwned: window.pwned === undefined ? null : String(window.pwned),
            };
        }"""
    )
    assert found["handlers"] == []
    assert found["links"] == ["https://example.com/safe"]
    body.hover()
    page.get_by_text("click me", exact=False).click()
    assert page.evaluate("window.pwned === undefined")
    # The markup is there, as the model wrote it, as text.
    expect(body).to_contain_text('<script>window.pwned = "script"</script>')
    expect(body).to_contain_text("<img src=x onerror=")
    expect(body.locator("table")).to_have_count(1)


# --- the page's JavaScript, in the browser ------------------------------------------------

PARSE = """([chunks, finish]) => {
    const events = [];
    const retries = [];
    const parser = createSseParser((event) => events.push(event), {
        onRetry: (ms) => retries.push(ms),
    });
    for (const chunk of chunks) parser.push(chunk);
    if (finish) parser.end();
    return { events, retries, lastEventId: parser.lastEventId };
}"""


def parse(page: Page, *chunks: str, finish: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(PARSE, [list(chunks), finish])
    return result


def events(page: Page, *chunks: str) -> list[tuple[str, str]]:
    return [(event["type"], event["data"]) for event in parse(page, *chunks)["events"]]


def test_sse_parser_follows_the_whatwg_rules(script_page: Page) -> None:
    # Line ends: LF, CRLF, CR, and a CRLF split between two chunks.
    assert events(script_page, "data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\n") == [
        ("message", "a"),
        ("message", "b"),
        ("message", "c"),
        ("message", "d"),
    ]
    assert events(script_page, "data: a\r", "\n", "\r\n") == [("message", "a")]
    assert events(script_page, "data: a\r", "\r\n") == [("message", "a")]
    # A leading BOM is dropped, once; anywhere else it is data.
    assert events(script_page, "\ufeff", "data: x\n\n") == [("message", "x")]
    assert events(script_page, "\ufeffdata: \ufeffy\n\n") == [("message", "\ufeffy")]
    # Comments; one leading space removed; no colon means an empty value; data lines joined.
    assert events(script_page, ": ping\ndata:  two\ndata\ndata:x\n\n") == [("message", " two\n\nx")]
    # The event type, which does not carry over to the next event.
    assert events(script_page, "event: meta\ndata: {}\n\ndata: next\n\n") == [
        ("meta", "{}"),
        ("message", "next"),
    ]
    # An event with no data is not dispatched; `data:` alone is an event with empty data.
    assert events(script_page, "event: ghost\n\nid: 1\n\ndata:\n\n") == [("message", "")]
    # Unknown fields are ignored, a field named with a space too.
    assert events(script_page, "foo: bar\ndata : no\ndata: yes\n\n") == [("message", "yes")]
    # An unfinished event at the end of the stream is discarded.
    assert events(script_page, "data: complete\n\ndata: cut off\n") == [("message", "complete")]


def test_sse_parser_handles_id_and_retry(script_page: Page) -> None:
    result = parse(
        script_page, "id: 7\ndata: a\n\nid: x\u0000y\ndata: b\n\nretry: 1500\nretry: 2s\n\n"
    )
    assert [event["lastEventId"] for event in result["events"]] == ["7", "7"]
    assert result["retries"] == [1500]
    assert parse(script_page, "id\ndata: a\n\n")["lastEventId"] == ""


def test_sse_parser_output_does_not_depend_on_chunking(script_page: Page) -> None:
    stream = (
        "event: meta\r\ndata: {}\r\n\r\n: ping\rdata: 한국어 답변\ndata:\r\n"
        "data:   indented\r\rdata: last\n\n"
    )
    whole = parse(script_page, stream)["events"]
    one_char_at_a_time = parse(script_page, *stream)["events"]
    assert one_char_at_a_time == whole
    assert [event["data"] for event in whole] == ["{}", "한국어 답변\n\n  indented", "last"]


def test_event_stream_reader_decodes_utf8_split_between_chunks(script_page: Page) -> None:
    data = script_page.evaluate(
        """async () => {
            const bytes = new TextEncoder().encode("\\ufeffdata: 지원자\\r\\n\\r\\ndata: 끝\\n\\n");
            const body = new ReadableStream({
                start(controller) {
                    // One byte at a time: every Korean character and the BOM are split.
                    for (const byte of bytes) controller.enqueue(new Uint8Array([byte]));
                    controller.close();
                },
            });
            const received = [];
            await readEventStream(body, (event) => received.push(event.data));
            return received;
        }"""
    )
    assert data == ["지원자", "끝"]


RENDER = """(markdown) => {
    const box = document.createElement("div");
    box.appendChild(renderMarkdown(markdown, { citationHref: (n) => n === 1 ? "#s1" : null }));
    return {
        html: box.innerHTML,
        text: box.textContent,
        tags: [...box.querySelectorAll("*")].map((node) => node.tagName.toLowerCase()),
        links: [...box.querySelectorAll("a")].map((a) => [a.textContent, a.getAttribute("href"),
                                                         a.rel, a.className]),
        attributes: [...box.querySelectorAll("*")].flatMap((node) =>
            [...node.attributes].map((attribute) => attribute.name)),
    };
}"""


def render(page: Page, markdown: str) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(RENDER, markdown)
    return result


HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=//evil.example></iframe>",
    "**<svg onload=alert(1)>**",
    "`<b>code</b>`",
    "```html\n<script>alert(1)</script>\n```",
    "- <style>body{display:none}</style>",
    "| <img src=x> | b |\n|---|---|\n| <script>x</script> | c |",
]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_markdown_from_the_model_never_becomes_html(script_page: Page, markdown: str) -> None:
    rendered = render(script_page, markdown)
    allowed = {"p", "strong", "code", "pre", "ul", "li", "br", "table", "thead", "tbody"}
    assert set(rendered["tags"]) <= allowed | {"tr", "th", "td", "div"}
    assert not {"img", "script", "iframe", "svg", "style", "a"} & set(rendered["tags"])
    assert not [name for name in rendered["attributes"] if name.startswith("on")]
    assert "<" in rendered["text"]  # the markup is there, as text


@pytest.mark.parametrize(
    "link",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click]( javascript:alert(1))",
        "[click](java\tscript:alert(1))",
        "[click](data:text/html,<script>alert(1)</script>)",
        "[click](vbscript:msgbox)",
        "[click](/relative/path)",
        "[click](//evil.example)",
        "<javascript:alert(1)>",
        "![click](https://evil.example/pixel.png)",
    ],
)
def test_only_http_and_mailto_urls_become_links(script_page: Page, link: str) -> None:
    rendered = render(script_page, link)
    assert rendered["links"] == []
    assert "img" not in rendered["tags"]
    assert "click" in rendered["text"] or "javascript" in rendered["text"]


def test_markdown_renders_what_models_write(script_page: Page) -> None:
    rendered = render(
        script_page,
        "# Title\n\nLine one\nline **two** and *three* and `code` [1] [2]\n\n"
        "1. first\n2. second\n   - nested\n\n"
        "> quoted\n\n---\n\n"
        "See [the site](https://example.com/a_(b)) or https://example.com/x. "
        "Mail minji.kim@example.com.",
    )
    assert rendered["tags"][:8] == ["h3", "p", "br", "strong", "em", "code", "a", "ol"]
    assert ["1", "#s1", "", "citation"] in rendered["links"]
    assert "[2]" in rendered["text"]  # no such source: the citation stays text
    assert ["the site", "https://example.com/a_(b)", "noopener noreferrer", ""] in rendered["links"]
    assert ["https://example.com/x", "https://example.com/x", "noopener noreferrer", ""] in (
        rendered["links"]
    )
    assert [
        "minji.kim@example.com",
        "mailto:minji.kim@example.com",
        "noopener noreferrer",
        "",
    ] in rendered["links"]
    assert {"blockquote", "hr", "ul", "li"} <= set(rendered["tags"])
    code = render(script_page, "```python\nprint('**not bold**')\n")
    assert code["tags"] == ["pre", "code"]
    # An unclosed fence, while streaming: code to the end, its asterisks as written.
    assert code["text"].rstrip("\n") == "print('**not bold**')"
    lists = render(script_page, "경력:\n2023. 3월부터 리드\n\n주요 성과:\n1. 이전\n2. 절감")
    assert lists["tags"] == ["p", "br", "p", "ol", "li", "li"]
    table = render(script_page, "| 연도 | 회사 |\n|---:|:---:|\n| 2021 | 한빛페이 |")
    assert "style" not in table["attributes"]  # the CSP forbids inline styles: classes instead
    assert 'class="align-right"' in table["html"]
    assert 'class="align-center"' in table["html"]


def test_korean_particles_stay_outside_links_and_emphasis(script_page: Page) -> None:
    korean = render(
        script_page,
        "**한빛페이**에서 일했고 snake_case_name을 썼습니다. minji.kim@example.com으로 "
        "연락하거나 https://github.com/minji-kim-example에서 보세요.",
    )
    assert korean["tags"] == ["p", "strong", "a", "a"]
    assert korean["text"].strip() == (
        "한빛페이에서 일했고 snake_case_name을 썼습니다. minji.kim@example.com으로 "
        "연락하거나 https://github.com/minji-kim-example에서 보세요."
    )
    assert [link[:2] for link in korean["links"]] == [
        ["minji.kim@example.com", "mailto:minji.kim@example.com"],
        ["https://github.com/minji-kim-example", "https://github.com/minji-kim-example"],
    ]


class CuttingProxy:
    """A TCP proxy in front of the app that cuts the first answer stream that passes through it
    after ``cut_after`` of its events, as a phone changing networks does: both connections
    reset mid-answer. Everything else (the page, its files, the resume) passes untouched."""

    def __init__(self, target_port: int, cut_after: int) -> None:
        self.target_port = target_port
        self.cut_after = cut_after
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            watching = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, watching)).start()
            threading.Thread(target=self._responses, args=(upstream, client, watching)).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, watching: Any) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if b"POST " + SSE_PATH.encode() in data and not self.cut.is_set():
                    watching.set()
                upstream.sendall(data)

    def _responses(self, upstream: socket.socket, client: socket.socket, watching: Any) -> None:
        events = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if watching.is_set() and not self.cut.is_set():
                    events += data.count(b"\n\n")
                    if events >= self.cut_after:
                        self.cut.set()
                        for end in (client, upstream):  # the body cut short, mid-event
                            end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                            # shutdown wakes the other thread's recv; close alone would not.
                            end.shutdown(socket.SHUT_RDWR)
                            end.close()
                        return
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()
        for end in self._sockets:
            with contextlib.suppress(OSError):
                end.close()


RESUMED_ANSWER = " ".join(
    f"{year}년에 김민지는 결제 플랫폼과 배차 시스템을 맡았고, in {year} she cut latency again."
    for year in range(2001, 2027)
)


def test_a_dropped_connection_resumes_in_the_same_answer(
    browser: Browser, app: RunningApp, upstream: RunningFake
) -> None:
    upstream.api.reset()
    upstream.api.enqueue(
        Scenario(deltas=split_into_deltas(RESUMED_ANSWER, 4), delay_between_deltas=0.01)
    )
    port = int(app.base_url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut_after=12)  # meta, sources, ten deltas
    context = browser.new_context(base_url=proxy.base_url, locale="ko-KR")
    context.set_default_timeout(15_000)
    problems: list[str] = []
    resumes: list[dict[str, str]] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "request",
            lambda request: (
                resumes.append({"url": request.url, **request.headers})
                if request.url.endswith("/stream")
                else None
            ),
        )
        page.goto("/")
        page.evaluate(
            """() => {
                window.statusLines = [];
                const status = document.getElementById("status");
                new MutationObserver(() => window.statusLines.push(status.textContent))
                    .observe(status, { subtree: true, childList: true, characterData: true });
            }"""
        )
        ask(page, "경력을 요약해 주세요")
        answer = page.locator(".message.assistant")
        expect(answer).to_have_attribute("data-state", "done", timeout=15_000)
        assert proxy.cut.is_set(), "the connection was cut mid-answer"
        expect(page.locator("#status")).to_have_text("답변이 끝났습니다.")
        # The drop was said quietly, in the interface's language, then the answer went on.
        lines = page.evaluate("window.statusLines")
        reconnecting = lines.index("연결이 끊겼습니다. 다시 연결하는 중…")
        assert "답변하는 중…" in lines[reconnecting:]
        # One bubble, the whole answer once: what the server stored.
        expect(answer).to_have_count(1)
        [resume] = resumes[:1]
        assert "/conversations/" in resume["url"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}\.[0-9]+", resume["last-event-id"])
        conversation_id = resume["url"].split("/conversations/")[1].split("/")[0]
        stored = app.wait_for_messages(conversation_id, 2)
        assert (stored[1]["status"], stored[1]["content"]) == ("completed", RESUMED_ANSWER)
        assert answer.locator(".answer").inner_text() == RESUMED_ANSWER
        assert problems == []
    finally:
        context.close()
        proxy.close()
