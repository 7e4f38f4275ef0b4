// A useChat-style chat (the `ai` package's own AbstractChat and DefaultChatTransport) whose
// connection drops mid-answer, then resumes as `useChat({ resume: true })` does: the
// package's reconnectToStream (GET <api>/<chat id>/stream), its replay handling and its reader.
//
//   node ai_sdk_resume.mjs <replica one> <replica two> <chat id> <question>
//
// The question goes to replica one; its body is cut, as a network drop does (a TypeError,
// which the package treats as a resumable disconnect), after some text deltas. The resume
// goes to replica two (the same URL the package builds, on the other replica's origin).
// Prints one JSON object: whether the drop happened, the resume's status, the errors the chat
// reported after the drop, its final status and the assistant message it assembled; then what
// a chat with no answer in flight gets from its resume (204: ready, nothing added).
import { AbstractChat, DefaultChatTransport } from "ai";

const [one, two, chatId, question] = process.argv.slice(2);
const DELTAS_BEFORE_DROP = 20;

class State {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(init) {
    super({ ...init, state: new State() });
  }
}

const result = { dropped: false, resumeStatus: null, resumeUrl: null, errors: [] };

// The body of the first answer, cut after some text deltas as a dropped network cuts it.
function droppingBody(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let deltas = 0;
  return new ReadableStream({
    async pull(controller) {
      if (deltas >= DELTAS_BEFORE_DROP) {
        result.dropped = true;
        await reader.cancel();
        controller.error(new TypeError("network error"));
        return;
      }
      const { done, value } = await reader.read();
      if (done) {
        controller.close();
        return;
      }
      deltas += decoder.decode(value, { stream: true }).split('"type":"text-delta"').length - 1;
      controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

const transport = new DefaultChatTransport({
  api: `${one}/api/chat`,
  fetch: async (url, init) => {
    if ((init?.method ?? "GET") === "GET") {
      // reconnectToStream: the package's URL, sent to the other replica.
      const resumeUrl = String(url).replace(one, two);
      const response = await fetch(resumeUrl, init);
      result.resumeUrl = resumeUrl.slice(two.length);
      result.resumeStatus = response.status;
      return response;
    }
    const response = await fetch(url, init);
    return new Response(droppingBody(response.body), {
      status: response.status,
      headers: response.headers,
    });
  },
});

let dropped = false;
const chat = new Chat({
  id: chatId,
  transport,
  onError: (error) => {
    if (!dropped && error instanceof TypeError) {
      dropped = true; // the disconnect itself
      return;
    }
    result.errors.push(String(error.message));
  },
});

await chat.sendMessage({ text: question });
result.statusAfterDrop = chat.status;
await chat.resumeStream();
result.status = chat.status;
const message = chat.messages.at(-1);
result.messages = chat.messages.length;
result.message = {
  role: message.role,
  metadata: message.metadata,
  text: message.parts
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join(""),
};

// A chat with no answer in flight: the resume gets 204, and the chat is ready, empty.
const first = { resumeUrl: result.resumeUrl, resumeStatus: result.resumeStatus };
const idle = new Chat({ id: `${chatId}-idle`, transport });
await idle.resumeStream();
result.idle = { status: idle.status, messages: idle.messages.length, resumeStatus: result.resumeStatus };
Object.assign(result, first);

process.stdout.write(JSON.stringify(result));
