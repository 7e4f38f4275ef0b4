/*
 * The chat page: asks POST /openai-response/sse and renders the answer as it streams.
 *
 * The reference client of the SSE contract (README, "The API"): fetch() with a JSON body,
 * the body read with readEventStream (sse.js, a WHATWG event-stream parser), the answer
 * rendered with renderMarkdown (markdown.js, DOM nodes only). Stop aborts the fetch; the
 * server sees the disconnect, closes the model's stream and stores the answer so far as
 * "interrupted". A follow-up sends the conversation_id from `meta` and only the new question.
 */
(function () {
  "use strict";

  const ENDPOINT = "/openai-response/sse";

  const form = document.getElementById("ask");
  const question = document.getElementById("question");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  const newButton = document.getElementById("new-conversation");
  const log = document.getElementById("log");
  const welcome = document.getElementById("welcome");
  const status = document.getElementById("status");

  let conversationId = null;
  let inFlight = null; // the AbortController of the answer streaming now
  let turnCount = 0;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function announce(text) {
    status.textContent = text;
  }

  function nearBottom() {
    const page = document.scrollingElement || document.documentElement;
    return page.scrollHeight - page.scrollTop - page.clientHeight < 120;
  }

  /** One question and its answer in the log. */
  function createTurn(text) {
    turnCount += 1;
    const id = "turn-" + turnCount;

    const asked = element("article", "message user");
    asked.setAttribute("aria-label", "Question");
    asked.appendChild(element("p", "message-text", text));

    const answer = element("article", "message assistant");
    answer.id = id;
    answer.setAttribute("aria-label", "Answer");
    answer.setAttribute("aria-busy", "true");
    answer.dataset.state = "waiting";
    const notes = element("div", "notes");
    const body = element("div", "answer");
    const typing = element("p", "typing", "Answering…");
    const sources = element("section", "sources");
    sources.hidden = true;
    const ending = element("p", "ending");
    ending.hidden = true;
    answer.append(notes, typing, body, sources, ending);

    welcome.hidden = true;
    log.append(asked, answer);
    answer.scrollIntoView({ block: "end" });

    let markdown = "";
    let sourceIds = new Set();

    const turn = {
      append(delta) {
        markdown += delta;
      },
      render() {
        const follow = nearBottom();
        if (markdown && answer.dataset.state === "waiting") {
          typing.hidden = true;
          answer.dataset.state = "streaming";
        }
        const citationHref = (number) =>
          sourceIds.has(number) ? "#" + id + "-source-" + number : null;
        body.replaceChildren(renderMarkdown(markdown, { citationHref: citationHref }));
        if (follow) answer.scrollIntoView({ block: "end" }); // unless the reader scrolled up
      },
      note(message) {
        notes.appendChild(element("p", "note", message));
      },
      showSources(items) {
        if (!Array.isArray(items) || items.length === 0) return;
        sourceIds = new Set(items.map((item) => item.id));
        const heading = element("h2", "sources-title", "Sources");
        heading.id = id + "-sources";
        sources.setAttribute("aria-labelledby", heading.id);
        const list = element("ol", "sources-list");
        for (const item of items) {
          const entry = element("li");
          entry.id = id + "-source-" + item.id;
          entry.value = item.id;
          const where = [item.source, item.heading].filter(Boolean).join(" · ");
          const page = Number.isInteger(item.page) ? ", p. " + item.page : "";
          entry.appendChild(element("span", "source-name", where + page));
          if (item.snippet) {
            // The start of a passage: its markdown emphasis would only show as asterisks.
            const snippet = item.snippet.replace(/\*\*|__/g, "");
            entry.appendChild(element("span", "source-snippet", snippet));
          }
          list.appendChild(entry);
        }
        sources.replaceChildren(heading, list);
        sources.hidden = false;
      },
      finish(state, message) {
        turn.render();
        typing.hidden = true;
        answer.dataset.state = state;
        answer.setAttribute("aria-busy", "false");
        if (message) {
          if (state === "error") ending.setAttribute("role", "alert");
          ending.className = "ending " + state;
          ending.textContent = message;
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

  /** What to tell the recruiter about an HTTP error answer (4xx/5xx, JSON {code, message}). */
  async function describeHttpError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: a proxy's error page, say
    }
    if (response.status === 429) {
      const seconds = retryAfterSeconds(response);
      const unit = seconds === 1 ? " second" : " seconds";
      const when = seconds === null ? "in a minute" : "in " + seconds + unit;
      return {
        code: "rate_limited",
        message: "Too many questions for now. Please try again " + when + ".",
      };
    }
    if (body && typeof body.message === "string" && body.message) {
      return { code: body.code, message: body.message };
    }
    return {
      code: null,
      message:
        "The server answered with an error (HTTP " + response.status + "). " +
        "Please try again in a moment.",
    };
  }

  function setBusy(busy) {
    sendButton.hidden = busy;
    stopButton.hidden = !busy;
    form.setAttribute("aria-busy", String(busy));
  }

  async function ask(text) {
    const controller = new AbortController();
    const turn = createTurn(text);
    inFlight = controller;
    setBusy(true);
    announce("Answering…");

    const request = { input: text };
    if (conversationId) request.conversation_id = conversationId;

    let outcome = null; // "done", "error" or "stopped"
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
        outcome = "error";
        turn.finish("error", "Could not reach the server. Check your connection and try again.");
        return;
      }
      if (!response.ok) {
        const problem = await describeHttpError(response);
        if (problem.code === "conversation_not_found") {
          conversationId = null; // the next question starts a new conversation
        }
        outcome = "error";
        turn.finish("error", problem.message);
        return;
      }

      const handle = function (event) {
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
            if (data.conversation_id) conversationId = data.conversation_id;
            if (data.notice && data.notice.message) turn.note(data.notice.message);
            break;
          case "sources":
            turn.showSources(data);
            break;
          case "notice":
            if (data.message) turn.note(data.message);
            break;
          case "done":
            outcome = "done";
            turn.finish(
              "done",
              data.finish_reason && data.finish_reason !== "stop"
                ? "The answer was cut short (" + data.finish_reason + ")."
                : null
            );
            break;
          case "error":
            outcome = "error";
            turn.finish("error", data.message || "The answer failed. Please try again.");
            break;
          default:
            break; // "agent" and any event this page does not know
        }
      };
      await readEventStream(response.body, handle, { onChunk: turn.render });
      if (!outcome) {
        outcome = "error";
        turn.finish("error", "The connection closed before the answer was complete.");
      }
    } catch (error) {
      if (controller.signal.aborted) {
        if (!outcome) {
          outcome = "stopped";
          turn.finish("stopped", "Stopped.");
        }
      } else if (!outcome) {
        outcome = "error";
        turn.finish("error", "The connection was lost before the answer was complete.");
      }
    } finally {
      // Unless "New conversation" abandoned this answer (and another may be in flight now).
      if (inFlight === controller) {
        inFlight = null;
        setBusy(false);
        announce(
          outcome === "done"
            ? "Answer complete."
            : outcome === "stopped"
              ? "Answer stopped."
              : "The answer could not be completed."
        );
      }
    }
  }

  function stop() {
    if (inFlight) inFlight.abort();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = question.value.trim();
    if (!text || inFlight) return;
    question.value = "";
    ask(text);
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
    announce("New conversation.");
  });

  for (const suggestion of document.querySelectorAll("[data-question]")) {
    suggestion.addEventListener("click", function () {
      if (inFlight) return;
      question.value = suggestion.dataset.question;
      form.requestSubmit();
    });
  }
})();
