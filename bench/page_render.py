"""One render of a streaming answer on the chat page: ``uv run python -m bench.page_render``.

While an answer streams, ``api/static/chat.js`` renders the whole text again at most once per
animation frame: markdown-it, then DOMPurify (``api/static/markdown.js``). This loads those
scripts into headless Chromium (Debian's ``/usr/bin/chromium``, or ``CHROMIUM_PATH``) and
times ``renderMarkdown`` on answers of growing length written like a model's (a Korean
paragraph with bold, a citation and a link, then a short list), markdown-it alone beside it.
A render longer than a frame (16.7 ms at 60 Hz) makes the page drop frames while it streams.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

from api.page import STATIC_DIR

SCRIPTS = (
    "vendor/markdown-it/markdown-it.umd.min.js",
    "vendor/dompurify/purify.min.js",
    "markdown.js",
)
PARAGRAPH = (
    "김민지는 **한빛페이**에서 결제 플랫폼 마이그레이션을 이끌었습니다 [1]. p99 지연 시간은 "
    "820ms에서 210ms로 줄었습니다 (https://example.com/a).\n\n- 항목 하나 `code`\n- 항목 둘\n\n"
)
TIME = """([text, rounds]) => {
    const cite = (n) => (n === 1 ? "#s1" : null);
    const md = markdownit({ html: false, linkify: true, breaks: true });
    for (let i = 0; i < 5; i++) renderMarkdown(text, { citationHref: cite });
    let start = performance.now();
    for (let i = 0; i < rounds; i++) renderMarkdown(text, { citationHref: cite });
    const page = (performance.now() - start) / rounds;
    start = performance.now();
    for (let i = 0; i < rounds; i++) md.render(text);
    return [page, (performance.now() - start) / rounds];
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="500,1000,2000,4000,8000", help="answer lengths")
    parser.add_argument("--rounds", type=int, default=100, help="renders per length")
    arguments = parser.parse_args()
    chromium = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=["--headless=new", "--no-sandbox"]
        )
        page = browser.new_page()
        page.set_content("<!doctype html><html><body></body></html>")
        for script in SCRIPTS:
            page.add_script_tag(content=(STATIC_DIR / script).read_text(encoding="utf-8"))
        print(f"{'characters':>10}  {'renderMarkdown ms':>17}  {'markdown-it alone ms':>20}")
        for size in (int(size) for size in arguments.sizes.split(",")):
            text = (PARAGRAPH * (size // len(PARAGRAPH) + 1))[:size]
            whole, parse = page.evaluate(TIME, [text, arguments.rounds])
            print(f"{size:>10}  {whole:>17.2f}  {parse:>20.2f}")
        browser.close()


if __name__ == "__main__":
    main()
