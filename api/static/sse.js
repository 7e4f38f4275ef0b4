/*
 * Server-Sent Events over fetch(): a parser that follows the WHATWG rules for interpreting an
 * event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream).
 *
 * EventSource can only GET, and POST /openai-response/sse needs a JSON body, so the page
 * reads the response body itself and feeds the decoded text to this parser:
 *
 *   const parser = createSseParser((event) => console.log(event.type, event.data));
 *   parser.push(text);   // any chunking: a line, an event or a CRLF may be split anywhere
 *   parser.end();        // end of stream: an unfinished event is discarded, as the spec says
 *
 * or, for a fetch() Response, readEventStream(response.body, onEvent).
 *
 * A classic script with no dependencies: it adds createSseParser and readEventStream to
 * globalThis (and to module.exports where there is one), so a portfolio page can copy it
 * as it is and a test can evaluate it in a real browser.
 */
(function (root) {
  "use strict";

  const LF = 10;
  const CR = 13;
  const BOM = 0xfeff;

  /**
   * A streaming event-stream parser.
   *
   * onEvent receives {type, data, lastEventId} for each dispatched event; type is the
   * `event` field, or "message" when there is none. options.onRetry(milliseconds) is called
   * for a valid `retry` field. parser.lastEventId and parser.retry keep the latest values.
   */
  function createSseParser(onEvent, options) {
    if (typeof onEvent !== "function") {
      throw new TypeError("createSseParser needs a function to call with each event");
    }
    const onRetry = options && typeof options.onRetry === "function" ? options.onRetry : null;

    let line = ""; // the start of a line whose end has not arrived yet
    let sawText = false; // the first character of the stream has been seen (BOM check)
    let afterCR = false; // the last chunk ended with CR: an LF at the next one's start ends nothing
    let dataBuffer = "";
    let eventTypeBuffer = "";
    let lastEventIdBuffer = "";
    const parser = { lastEventId: "", retry: null, push: push, end: end };

    function dispatch() {
      // The last event ID is set even when no event is dispatched.
      parser.lastEventId = lastEventIdBuffer;
      if (dataBuffer === "") {
        eventTypeBuffer = "";
        return;
      }
      const data = dataBuffer.charCodeAt(dataBuffer.length - 1) === LF
        ? dataBuffer.slice(0, -1)
        : dataBuffer;
      const type = eventTypeBuffer || "message";
      const event = { type: type, data: data, lastEventId: lastEventIdBuffer };
      dataBuffer = "";
      eventTypeBuffer = "";
      onEvent(event);
    }

    function processField(field, value) {
      if (field === "event") {
        eventTypeBuffer = value;
      } else if (field === "data") {
        dataBuffer += value + "\n";
      } else if (field === "id") {
        if (value.indexOf("\u0000") === -1) lastEventIdBuffer = value;
      } else if (field === "retry") {
        if (/^[0-9]+$/.test(value)) {
          parser.retry = parseInt(value, 10);
          if (onRetry) onRetry(parser.retry);
        }
      }
      // Any other field is ignored.
    }

    function processLine(text) {
      if (text === "") {
        dispatch();
        return;
      }
      if (text.charCodeAt(0) === 58 /* ":" */) return; // a comment, e.g. ": ping"
      const colon = text.indexOf(":");
      if (colon === -1) {
        processField(text, "");
        return;
      }
      let value = text.slice(colon + 1);
      if (value.charCodeAt(0) === 32 /* " " */) value = value.slice(1);
      processField(text.slice(0, colon), value);
    }

    function push(chunk) {
      if (typeof chunk !== "string") throw new TypeError("push() takes decoded text");
      if (chunk === "") return;
      if (!sawText) {
        sawText = true;
        if (chunk.charCodeAt(0) === BOM) chunk = chunk.slice(1);
      }
      let start = 0;
      if (afterCR && chunk.charCodeAt(0) === LF) start = 1; // the LF of a CRLF split in two
      afterCR = false;
      for (let i = start; i < chunk.length; i++) {
        const code = chunk.charCodeAt(i);
        if (code !== LF && code !== CR) continue;
        const complete = line + chunk.slice(start, i);
        line = "";
        if (code === CR) {
          if (i + 1 === chunk.length) afterCR = true;
          else if (chunk.charCodeAt(i + 1) === LF) i++;
        }
        start = i + 1;
        processLine(complete);
      }
      line += chunk.slice(start);
    }

    function end() {
      // "If the file ends in the middle of an event, before the final empty line, the
      // incomplete event is not dispatched."
      line = "";
      dataBuffer = "";
      eventTypeBuffer = "";
      afterCR = false;
    }

    return parser;
  }

  /**
   * Reads a fetch() body (a ReadableStream of bytes) to its end, calling onEvent for each
   * event. Bytes are decoded as UTF-8 as they arrive ({stream: true} keeps a character
   * split between two chunks whole); the decoder leaves a BOM to the parser, which drops
   * one at the start as the spec says. options.onChunk() is called after each chunk's
   * events, a good moment to render. Rejects when the read fails, e.g. with an AbortError
   * when the fetch is aborted.
   */
  async function readEventStream(body, onEvent, options) {
    const onChunk = options && typeof options.onChunk === "function" ? options.onChunk : null;
    const reader = body.getReader();
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    const parser = createSseParser(onEvent, options);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (onChunk) onChunk();
      }
      parser.push(decoder.decode());
      parser.end();
      return parser;
    } catch (error) {
      // Whatever failed (the network, or onEvent), do not leave the connection open.
      reader.cancel().catch(() => {});
      throw error;
    } finally {
      reader.releaseLock();
    }
  }

  root.createSseParser = createSseParser;
  root.readEventStream = readEventStream;
  if (typeof module === "object" && module && module.exports) {
    module.exports = { createSseParser: createSseParser, readEventStream: readEventStream };
  }
})(globalThis);
