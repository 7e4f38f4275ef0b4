/*
 * The chat page: asks POST /openai-response/sse and renders the answer as it streams.
 *
 * The reference client of the SSE contract (README, "The API"): fetch() with a JSON body,
 * the body read with readEventStream (sse.js, a WHATWG event-stream parser), the answer
 * rendered with renderMarkdown (markdown.js: markdown-it, then DOMPurify), at most once a
 * frame. Its words come from pageText (i18n.js), in English or Korean. Stop aborts the fetch
 * and asks the server to stop the answer (DELETE /conversations/{id}/stream): it closes the
 * model's stream and stores the answer so far as "interrupted". A follow-up sends the conversation_id from `meta` and only the new question.
 *
 * One answer's stream is an object (startAnswer) that readAnswer reads a response into: the
 * events it has seen, the id of the last one, and how it ended. When the connection drops
 * before the answer's end (a network error or a body cut short, not a Stop), the page
 * reconnects to GET /conversations/{id}/stream with the id of the last event it received
 * (Last-Event-ID) and reads the rest into the same object: the same answer bubble goes on,
 * with no text twice. It tries again with back-off for a few seconds (the server keeps the
 * answer going for RESUME_WINDOW_SECONDS, 15 by default), saying so in the status line.
 */
(function () {
  "use strict";

  const ENDPOINT = "/openai-response/sse";
  // Waits before each reconnection after a drop: about 7 s in all, within the server's window.
  const RESUME_DELAYS_MS = [300, 600, 1200, 2000, 3000];
  const text = globalThis.pageText;

  const form = document.getElementById("ask");
  const question = document.getElementById("question");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  const newButton = document.getElementById("new-conversation");
  const log = document.getElementById("log");
  const welcome = document.getElementById("welcome");
  const status = document.getElementById("status");
  const subtitle = document.querySelector(".subtitle");

  let conversationId = null;
  let inFlight = null; // the AbortController of the answer streaming now
  let turnCount = 0;

  function element(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  function announce(key) {
    text.translate(status, key);
  }

  function nearBottom() {
    const page = document.scrollingElement || document.documentElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 120;
  }

  /** One question and its answer in the log. */
  function createTurn(asked) {
    turnCount += 1;
    const id = "turn-" + turnCount;

    const questionNode = element("article", "message user");
    questionNode.setAttribute("aria-label", text.t("turn.question"));
    questionNode.dataset.i18nLabel = "turn.question";
    const questionText = element("p", "message-text");
    questionText.textContent = asked;
    questionNode.appendChild(questionText);

    const answer = element("article", "message assistant");
    answer.id = id;
    answer.setAttribute("aria-label", text.t("turn.answer"));
    answer.dataset.i18nLabel = "turn.answer";
    answer.setAttribute("aria-busy", "true");
    answer.dataset.state = "waiting";
    const notes = element("div", "notes");
    const body = element("div", "answer");
    const typing = text.translate(element("p", "typing"), "turn.answering");
    const sources = element("section", "sources");
    sources.hidden = true;
    const ending = element("p", "ending");
    ending.hidden = true;
    answer.append(notes, typing, body, sources, ending);

    welcome.hidden = true;
    log.append(questionNode, answer);
    answer.scrollIntoView({ block: "end" });

    let markdown = "";
    let sourceIds = new Set();
    let frame = null; // a render waiting for the next animation frame

    /**
     * Keeps the answer in view while it streams: its end, until the answer is taller than the
     * space above the question box; from then on its start, so that the reader (on a phone
     * above all) reads it from its first line rather than being carried to the sources.
     */
    function follow() {
      const room = form.getBoundingClientRect().top;
      if (answer.getBoundingClientRect().height > room) answer.scrollIntoView({ block: "start" });
      else answer.scrollIntoView({ block: "end" });
    }

    const turn = {
      asked: asked,
      append(delta) {
        markdown += delta;
      },
      render() {
        if (frame !== null) cancelAnimationFrame(frame);
        frame = null;
        const following = nearBottom(); // unless the reader scrolled away
        if (markdown && answer.dataset.state === "waiting") {
          typing.hidden = true;
          answer.dataset.state = "streaming";
        }
        const citationHref = (number) =>
          sourceIds.has(number) ? "#" + id + "-source-" + number : null;
        body.replaceChildren(renderMarkdown(markdown, { citationHref: citationHref }));
        if (following) follow();
      },
      /** Renders at the next frame, once however many chunks arrive before it. */
      scheduleRender() {
        if (frame === null) frame = requestAnimationFrame(turn.render);
      },
      note(code, message) {
        notes.appendChild(text.serverMessage(element("p", "note"), code, message));
      },
      showSources(items) {
        if (!Array.isArray(items) || items.length === 0) return;
        sourceIds = new Set(items.map((item) => item.id));
        const heading = text.translate(element("h2", "sources-title"), "turn.sources");
        heading.id = id + "-sources";
        sources.setAttribute("aria-labelledby", heading.id);
        const list = element("ol", "sources-list");
        for (const item of items) {
          const entry = element("li");
          entry.id = id + "-source-" + item.id;
          entry.value = item.id;
          const name = element("span", "source-name");
          name.textContent = [item.source, item.heading].filter(Boolean).join(" · ");
          entry.appendChild(name);
          if (Number.isInteger(item.page)) {
            name.appendChild(text.translate(element("span"), "turn.page", { page: item.page }));
          }
          if (item.snippet) {
            // The start of a passage: its markdown emphasis would only show as asterisks.
            const snippet = element("span", "source-snippet");
            snippet.textContent = item.snippet.replace(/\*\*|__/g, "");
            entry.appendChild(snippet);
          }
          list.appendChild(entry);
        }
        sources.replaceChildren(heading, list);
        sources.hidden = false;
      },
      /** Ends the turn; show(node) writes its closing message, if it has one. */
      finish(state, show) {
        turn.render();
        typing.hidden = true;
        answer.dataset.state = state;
        answer.setAttribute("aria-busy", "false");
        if (show) {
          if (state === "error") ending.setAttribute("role", "alert");
          ending.className = "ending " + state;
          show(ending);
          ending.hidden = false;
        }
      },
    };
    return turn;
  }

  function retryAfterSeconds(response) {
    const value = response.headers.get("Retry-After");
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return parseInt(value, 10);
    const date = Date.parse(value);
    return Number.isNaN(date) ? null : Math.max(1, Math.ceil((date - Date.now()) / 1000));
  }

  /** The numbers of "The input is 501 characters long; the limit is 500." */
  function lengthAndLimit(message) {
    const numbers = /(\d+)\D+(\d+)/.exec(message || "");
    return numbers ? { length: numbers[1], limit: numbers[2] } : null;
  }

  /**
   * What to tell the recruiter about an HTTP error answer (4xx/5xx, JSON {code, message}):
   * {code, show(node)}.
   */
  async function describeHttpError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: a proxy's error page, say
    }
    if (response.status === 429) {
      const seconds = retryAfterSeconds(response);
      return {
        code: "rate_limited",
        show: (node) =>
          seconds === null
            ? text.translate(node, "error.rateLimitedSoon")
            : seconds === 1
              ? text.translate(node, "error.rateLimitedInOne")
              : text.translate(node, "error.rateLimitedIn", { seconds: seconds }),
      };
    }
    if (body && typeof body.message === "string" && body.message) {
      let code = typeof body.code === "string" ? body.code : null;
      const numbers = code === "input_too_long" ? lengthAndLimit(body.message) : null;
      if (code === "input_too_long" && numbers === null) code = "input_too_long.plain";
      return { code: body.code, show: (node) => text.serverMessage(node, code, body.message, numbers) };
    }
    return {
      code: null,
      show: (node) => text.translate(node, "error.http", { status: response.status }),
    };
  }

  function setBusy(busy) {
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    form.setAttribute("aria-busy", String(busy));
  }

  /** The state of one answer's stream, whichever response it is read from. */
  function startAnswer(turn, controller) {
    return {
      turn: turn,
      controller: controller,
      outcome: null,
      lastEventId: "",
      conversationId: null,
    };
  }

  /** Ends the answer with an error; the question goes back in the box, ready to send again. */
  function fail(stream, show) {
    stream.outcome = "error";
    stream.turn.finish("error", show);
    if (!question.value) question.value = stream.turn.asked;
  }

  /** Handles one event of the answer's stream. */
  function handleEvent(stream, event) {
    const turn = stream.turn;
    if (event.lastEventId) stream.lastEventId = event.lastEventId;
    let data = null;
    if (event.type !== "message") {
      try {
        data = JSON.parse(event.data);
      } catch (_) {
        return; // not ours: ignore it
      }
      if (data === null || typeof data !== "object") return;
    }
    switch (event.type) {
      case "message":
        turn.append(event.data);
        break;
      case "meta":
        if (data.conversation_id) {
          conversationId = data.conversation_id;
          stream.conversationId = data.conversation_id;
        }
        if (data.notice && data.notice.message) turn.note(data.notice.code, data.notice.message);
        break;
      case "sources":
        turn.showSources(data);
        break;
      case "notice":
        if (data.message) turn.note(data.code, data.message);
        break;
      case "done":
        stream.outcome = "done";
        turn.finish(
          "done",
          data.finish_reason && data.finish_reason !== "stop"
            ? (node) => text.translate(node, "turn.cutShort", { reason: data.finish_reason })
            : null
        );
        break;
      case "error":
        fail(stream, (node) =>
          data.message
            ? text.serverMessage(node, data.code, data.message)
            : text.translate(node, "error.failed")
        );
        break;
      default:
        break; // "agent" and any event this page does not know
    }
  }

  /**
   * Reads an event-stream response into the answer until its terminal event or the end of
   * the body. Rejects when the read fails (the network, or Stop: an AbortError).
   */
  async function readAnswer(stream, response) {
    await readEventStream(response.body, (event) => handleEvent(stream, event), {
      onChunk: stream.turn.scheduleRender,
    });
  }

  /** Resolves after ``ms``; rejects at once if ``signal`` aborts (Stop) meanwhile. */
  function pause(ms, signal) {
    return new Promise(function (resolve, reject) {
      const aborted = () => reject(new DOMException("Stopped", "AbortError"));
      if (signal.aborted) return aborted();
      const timer = setTimeout(function () {
        signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      function onAbort() {
        clearTimeout(timer);
        aborted();
      }
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Reads the answer from ``response``; if the connection drops before its end, reconnects
   * with the id of the last event received and reads the rest, until the answer ends or the
   * attempts run out. Rejects only on Stop (an AbortError).
   */
  async function readToTheEnd(stream, response) {
    const signal = stream.controller.signal;
    let lost = "error.closed";
    try {
      await readAnswer(stream, response);
    } catch (error) {
      if (signal.aborted) throw error;
      lost = "error.lost";
    }
    let attempt = 0;
    while (!stream.outcome) {
      if (!stream.conversationId || !stream.lastEventId || attempt >= RESUME_DELAYS_MS.length) {
        fail(stream, (node) => text.translate(node, lost));
        return;
      }
      announce("status.reconnecting");
      await pause(RESUME_DELAYS_MS[attempt], signal);
      attempt += 1;
      const before = stream.lastEventId;
      let resumed;
      try {
        resumed = await fetch(
          "/conversations/" + encodeURIComponent(stream.conversationId) + "/stream",
          {
            headers: { Accept: "text/event-stream", "Last-Event-ID": stream.lastEventId },
            cache: "no-store",
            signal: signal,
          }
        );
      } catch (error) {
        if (signal.aborted) throw error;
        continue; // still offline: try again
      }
      if (resumed.status !== 200) {
        // 204: the answer is over and no longer kept; 409: it cannot be continued.
        attempt = RESUME_DELAYS_MS.length;
        continue;
      }
      announce("status.answering");
      try {
        await readAnswer(stream, resumed);
      } catch (error) {
        if (signal.aborted) throw error;
      }
      if (stream.lastEventId !== before) attempt = 0; // it went on: a later drop starts afresh
    }
  }

  async function ask(asked) {
    const controller = new AbortController();
    const stream = startAnswer(createTurn(asked), controller);
    inFlight = controller;
    setBusy(true);
    announce("status.answering");

    const request = { input: asked };
    if (conversationId) request.conversation_id = conversationId;

    try {
      let response;
      try {
        response = await fetch(ENDPOINT, {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(request),
          signal: controller.signal,
        });
      } catch (error) {
        if (controller.signal.aborted) throw error;
        fail(stream, (node) => text.translate(node, "error.unreachable"));
        return;
      }
      if (!response.ok) {
        const problem = await describeHttpError(response);
        if (problem.code === "conversation_not_found") {
          conversationId = null; // the next question starts a new conversation
        }
        fail(stream, problem.show);
        return;
      }
      await readToTheEnd(stream, response);
    } catch (error) {
      if (controller.signal.aborted) {
        if (!stream.outcome) {
          stream.outcome = "stopped";
          stream.turn.finish("stopped", (node) => text.translate(node, "turn.stopped"));
        }
      } else if (!stream.outcome) {
        fail(stream, (node) => text.translate(node, "error.lost"));
      }
    } finally {
      // Unless "New conversation" abandoned this answer (and another may be in flight now).
      if (inFlight === controller) {
        inFlight = null;
        setBusy(false);
        announce(
          stream.outcome === "done"
            ? "status.done"
            : stream.outcome === "stopped"
              ? "status.stopped"
              : "status.failed"
        );
      }
    }
  }

  function stop() {
    if (!inFlight) return;
    inFlight.abort();
    // The server keeps an answer whose connection closed going for a while, for a resume
    // (RESUME_WINDOW_SECONDS): a Stop says that this one is not wanted.
    if (conversationId) {
      const url = "/conversations/" + encodeURIComponent(conversationId) + "/stream";
      fetch(url, { method: "DELETE", keepalive: true }).catch(function () {});
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const asked = question.value.trim();
    if (!asked || inFlight) return;
    question.value = "";
    ask(asked);
  });

  question.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && inFlight) {
      event.preventDefault();
      stop();
      return;
    }
    if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
    // An Enter that confirms a Korean (or any IME) composition must not send the question.
    if (event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    form.requestSubmit();
  });

  stopButton.addEventListener("click", function () {
    stop();
    question.focus();
  });

  newButton.addEventListener("click", function () {
    stop();
    inFlight = null; // the next question may be asked at once
    setBusy(false);
    conversationId = null;
    log.replaceChildren();
    welcome.hidden = false;
    question.value = "";
    question.focus();
    announce("status.new");
  });

  for (const suggestion of document.querySelectorAll("[data-question]")) {
    suggestion.addEventListener("click", function () {
      if (inFlight) return;
      question.value = suggestion.dataset.question;
      form.requestSubmit();
    });
  }

  for (const button of document.querySelectorAll("[data-language]")) {
    button.addEventListener("click", function () {
      text.setLanguage(button.dataset.language);
    });
  }
  text.onChange(function (language) {
    // The subtitle is the title in the other language.
    subtitle.lang = language === "ko" ? "en" : "ko";
  });
  text.apply();
})();
