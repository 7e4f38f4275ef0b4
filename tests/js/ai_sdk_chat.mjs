// Talks to POST /api/chat as a useChat front end does, with the `ai` package's own transport
// (DefaultChatTransport: its request body, its SSE and JSON chunk parser) and its own reader
// (readUIMessageStream: the chunks folded into a UI message, as useChat shows it).
//
//   node ai_sdk_chat.mjs <base URL> <chat id> '<JSON list of questions>'
//
// Asks the questions in turn in one chat, each after the answers before it (a follow-up sends
// the whole chat, the earlier answers with their metadata, as useChat does), and prints one
// JSON object: for each turn the response's protocol header, the chunk types in order, the
// assembled message (its text, metadata and sources) and the errors the stream reported.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [baseUrl, chatId, questionsJson] = process.argv.slice(2);
const questions = JSON.parse(questionsJson);

const turns = [];
const messages = [];
for (const [index, question] of questions.entries()) {
  const turn = { header: null, status: null, chunkTypes: [], errors: [], rejected: null };
  const transport = new DefaultChatTransport({
    api: `${baseUrl}/api/chat`,
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      turn.status = response.status;
      turn.header = response.headers.get("x-vercel-ai-ui-message-stream");
      return response;
    },
  });
  messages.push({ id: `user-${index}`, role: "user", parts: [{ type: "text", text: question }] });
  let chunks;
  try {
    chunks = await transport.sendMessages({
      chatId,
      messages,
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    });
  } catch (error) {
    // A 4xx before the stream: the transport throws with the response's body.
    turn.rejected = String(error.message);
    turns.push(turn);
    messages.pop();
    continue;
  }
  const [counted, read] = chunks.tee();
  const counting = (async () => {
    for await (const chunk of counted) turn.chunkTypes.push(chunk.type);
  })();
  let message;
  for await (const snapshot of readUIMessageStream({
    stream: read,
    onError: (error) => turn.errors.push(String(error.message)),
  })) {
    message = snapshot;
  }
  await counting;
  turn.message = {
    id: message.id,
    role: message.role,
    metadata: message.metadata,
    text: message.parts.filter((part) => part.type === "text").map((part) => part.text).join(""),
    sources: message.parts.filter((part) => part.type === "source-document"),
  };
  messages.push(message);
  turns.push(turn);
}
process.stdout.write(JSON.stringify({ turns }));
