"""A relay written the obvious way: the baseline the app is measured against in ``bench.relay``.

FastAPI, the OpenAI SDK and a ``StreamingResponse`` of an async generator that formats each
text delta as an SSE frame: what a tutorial would write, with no tuning, no storage, no
retrieval and no error handling. It is deliberately left as it is; do not optimise it.

``uv run python -m bench.straightforward_relay --port 8100 --upstream http://127.0.0.1:9100/v1``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

MODEL = "gpt-4.1-mini"


class Question(BaseModel):
    input: str


def create_app(upstream_base_url: str) -> FastAPI:
    app = FastAPI()
    client = AsyncOpenAI(base_url=upstream_base_url, api_key="bench")

    @app.post("/openai-response/sse")
    async def relay(question: Question) -> StreamingResponse:
        async def frames() -> AsyncIterator[str]:
            stream = await client.responses.create(model=MODEL, input=question.input, stream=True)
            async for event in stream:
                if event.type == "response.output_text.delta":
                    yield f"data: {event.delta}\n\n"
            yield "event: done\ndata: {}\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.straightforward_relay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--upstream", required=True, help="the Responses API base URL (…/v1)")
    args = parser.parse_args(argv)
    # The uvicorn options of api.serving.serve: asyncio's event loop, httptools (picked by uvicorn).
    uvicorn.run(
        create_app(args.upstream),
        host=args.host,
        port=args.port,
        log_level="warning",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        loop="asyncio",
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
