// Reads one answer with a third-party SSE client and prints the text it rebuilt, as JSON.
//
//   node sse_clients.mjs <client> <URL> '<JSON request body>'
//
// <client> is one of:
//   eventsource-parser        POST /openai-response/sse: the data of the unnamed events, joined
//   fetch-event-source        the same with @microsoft/fetch-event-source (its line-break bug)
//   fetch-event-source-chat   POST /api/chat with fetch-event-source: every data line is one
//                             JSON chunk, so the bug cannot touch the text (the workaround)
import { createParser } from "eventsource-parser";

// fetch-event-source is written for browsers: it clears its retry timer on `window` and
// stops listening to `document`'s visibility changes at the end.
globalThis.window ??= globalThis;
globalThis.document ??= { removeEventListener() {}, addEventListener() {}, hidden: false };
const { fetchEventSource } = await import("@microsoft/fetch-event-source");

const [client, url, body] = process.argv.slice(2);
const init = { method: "POST", headers: { "content-type": "application/json" }, body };
let text = "";

if (client === "eventsource-parser") {
  const response = await fetch(url, init);
  const parser = createParser({
    onEvent(event) {
      if (event.event === undefined) text += event.data;
    },
  });
  const decoder = new TextDecoder();
  for await (const bytes of response.body) parser.feed(decoder.decode(bytes, { stream: true }));
} else if (client === "fetch-event-source" || client === "fetch-event-source-chat") {
  const chat = client === "fetch-event-source-chat";
  await fetchEventSource(url, {
    ...init,
    fetch,
    openWhenHidden: true,
    onmessage(message) {
      if (chat) {
        if (message.data === "[DONE]") return;
        const chunk = JSON.parse(message.data);
        if (chunk.type === "text-delta") text += chunk.delta;
      } else if (message.event === "") {
        text += message.data;
      }
    },
    onerror(error) {
      throw error; // no retries: one answer
    },
  });
} else {
  throw new Error(`unknown client ${client}`);
}
process.stdout.write(JSON.stringify({ text }));
