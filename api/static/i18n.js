/*
 * The page's interface in English and Korean.
 *
 * The language is the one the recruiter chose with the switch (kept in localStorage), else the
 * first of the browser's languages (navigator.languages) that the page speaks, else English.
 * Elements carry the key of their text (data-i18n, data-i18n-placeholder, data-i18n-label for
 * aria-label, data-i18n-params for a message's values), so a switch re-translates everything on
 * the page, the messages of earlier answers included. <html lang> follows the language.
 *
 *   pageText.t("status.answering")                    // "Answering…" or "답변하는 중…"
 *   pageText.translate(node, "error.http", { status: 502 })   // sets the text, keeps the key
 *   pageText.setLanguage("ko")                          // stores it and re-translates
 */
(function (root) {
  "use strict";

  const STORAGE_KEY = "ask-the-applicant.language";
  const LANGUAGES = ["en", "ko"];

  const MESSAGES = {
    en: {
      "page.title": "Ask the Applicant · 지원자에게 무엇이든 물어봐!",
      "page.heading": "Ask the Applicant",
      "page.subtitle": "지원자에게 무엇이든 물어봐!",
      "page.skip": "Skip to the question box",
      "page.language": "Language",
      "page.new": "New conversation",
      "welcome.title": "Questions about the applicant, answered from their own documents",
      "welcome.text":
        "Ask in Korean or English: experience, projects, skills, when they can start. " +
        "Answers cite the documents they come from.",
      "welcome.examples": "Example questions",
      "log.label": "Conversation",
      "composer.label": "Ask a question",
      "composer.question": "Your question",
      "composer.keys": "Enter to send · Shift+Enter for a new line",
      "composer.placeholder": "Ask about the applicant…",
      "composer.send": "Send",
      "composer.stop": "Stop",
      "turn.question": "Question",
      "turn.answer": "Answer",
      "turn.answering": "Answering…",
      "turn.sources": "Sources",
      "turn.page": ", p. {page}",
      "turn.stopped": "Stopped.",
      "turn.cutShort": "The answer was cut short ({reason}).",
      "status.answering": "Answering…",
      "status.done": "Answer complete.",
      "status.stopped": "Answer stopped.",
      "status.failed": "The answer could not be completed.",
      "status.new": "New conversation.",
      "status.reconnecting": "Connection lost. Reconnecting…",
      "error.rateLimitedIn": "Too many questions for now. Please try again in {seconds} seconds.",
      "error.rateLimitedInOne": "Too many questions for now. Please try again in 1 second.",
      "error.rateLimitedSoon": "Too many questions for now. Please try again in a minute.",
      "error.http":
        "The server answered with an error (HTTP {status}). Please try again in a moment.",
      "error.unreachable": "Could not reach the server. Check your connection and try again.",
      "error.closed": "The connection closed before the answer was complete.",
      "error.lost": "The connection was lost before the answer was complete.",
      "error.failed": "The answer failed. Please try again.",
    },
    ko: {
      "page.title": "지원자에게 무엇이든 물어봐! · Ask the Applicant",
      "page.heading": "지원자에게 무엇이든 물어봐!",
      "page.subtitle": "Ask the Applicant",
      "page.skip": "질문 입력란으로 건너뛰기",
      "page.language": "언어",
      "page.new": "새 대화",
      "welcome.title": "지원자에 대한 질문에 지원자 본인의 문서로 답합니다",
      "welcome.text":
        "경력, 프로젝트, 기술, 입사 가능일 등 무엇이든 한국어나 영어로 물어보세요. " +
        "답변에는 근거가 된 문서가 표시됩니다.",
      "welcome.examples": "질문 예시",
      "log.label": "대화",
      "composer.label": "질문하기",
      "composer.question": "질문",
      "composer.keys": "Enter로 보내기 · Shift+Enter로 줄바꿈",
      "composer.placeholder": "지원자에 대해 물어보세요…",
      "composer.send": "보내기",
      "composer.stop": "중지",
      "turn.question": "질문",
      "turn.answer": "답변",
      "turn.answering": "답변하는 중…",
      "turn.sources": "출처",
      "turn.page": ", {page}쪽",
      "turn.stopped": "중지했습니다.",
      "turn.cutShort": "답변이 중간에 끝났습니다({reason}).",
      "status.answering": "답변하는 중…",
      "status.done": "답변이 끝났습니다.",
      "status.stopped": "답변을 중지했습니다.",
      "status.failed": "답변을 끝내지 못했습니다.",
      "status.new": "새 대화를 시작했습니다.",
      "status.reconnecting": "연결이 끊겼습니다. 다시 연결하는 중…",
      "error.rateLimitedIn": "질문이 너무 많습니다. {seconds}초 후에 다시 시도해 주세요.",
      "error.rateLimitedInOne": "질문이 너무 많습니다. 1초 후에 다시 시도해 주세요.",
      "error.rateLimitedSoon": "질문이 너무 많습니다. 1분 후에 다시 시도해 주세요.",
      "error.http": "서버가 오류로 응답했습니다(HTTP {status}). 잠시 후 다시 시도해 주세요.",
      "error.unreachable": "서버에 연결할 수 없습니다. 인터넷 연결을 확인하고 다시 시도해 주세요.",
      "error.closed": "답변이 끝나기 전에 연결이 닫혔습니다.",
      "error.lost": "답변이 끝나기 전에 연결이 끊어졌습니다.",
      "error.failed": "답변을 완성하지 못했습니다. 다시 시도해 주세요.",
      // The server's messages are in English (README, "Error codes"): by their code.
      "code.invalid_request": "질문을 처리할 수 없습니다. 질문을 확인하고 다시 보내 주세요.",
      "code.input_too_long": "질문이 너무 깁니다({length}자, 최대 {limit}자). 질문을 줄여 주세요.",
      "code.input_too_long.plain": "질문이 너무 깁니다. 질문을 줄여 주세요.",
      "code.conversation_not_found":
        "이 대화를 찾을 수 없습니다(만료되었을 수 있습니다). 다시 보내면 새 대화로 시작합니다.",
      "code.model_not_allowed": "이 서비스에서 제공하지 않는 모델입니다.",
      "code.upstream_auth": "답변 서비스 설정에 문제가 있습니다. 나중에 다시 시도해 주세요.",
      "code.upstream_rate_limited": "답변 서비스가 지금 바쁩니다. 1분 후에 다시 시도해 주세요.",
      "code.upstream_unavailable":
        "답변 서비스를 지금 사용할 수 없습니다. 잠시 후 다시 시도해 주세요.",
      "code.upstream_timeout": "답변 서비스의 응답이 너무 늦습니다. 다시 시도해 주세요.",
      "code.upstream_interrupted": "답변이 끝나기 전에 중단되었습니다. 다시 시도해 주세요.",
      "code.upstream_failed": "답변 서비스가 이 답변을 완성하지 못했습니다.",
      "code.upstream_bad_request": "답변 서비스가 이 질문을 거부했습니다.",
      "code.server_shutting_down":
        "서비스가 다시 시작하는 중이라 답변이 끊겼습니다. 잠시 후 다시 질문해 주세요.",
      "code.storage_unavailable": "지금은 대화를 저장할 수 없습니다. 잠시 후 다시 시도해 주세요.",
      "code.internal_error": "서버에서 문제가 생겼습니다. 다시 시도해 주세요.",
      "code.invalid_last_event_id": "이어 받을 위치가 올바르지 않습니다. 다시 질문해 주세요.",
      "code.resume_unavailable": "이 답변은 더 이어 받을 수 없습니다. 다시 질문해 주세요.",
      "code.answered_offline": "AI 모델을 사용할 수 없어 지원자의 문서를 인용해 답합니다.",
      "code.daily_token_budget_spent":
        "오늘의 AI 답변 예산을 다 썼습니다. 이 답변은 지원자의 문서를 인용합니다.",
    },
  };

  const listeners = [];
  let language = chooseLanguage();

  function stored() {
    try {
      const value = root.localStorage.getItem(STORAGE_KEY);
      return LANGUAGES.indexOf(value) === -1 ? null : value;
    } catch (_) {
      return null; // storage disabled: the browser's language decides
    }
  }

  /** The language the recruiter chose, else the browser's first one the page speaks. */
  function chooseLanguage() {
    const chosen = stored();
    if (chosen) return chosen;
    const preferred = root.navigator.languages || [root.navigator.language || ""];
    for (const tag of preferred) {
      const primary = String(tag).toLowerCase().split("-")[0];
      if (LANGUAGES.indexOf(primary) !== -1) return primary;
    }
    return "en";
  }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(MESSAGES[language], key);
  }

  function format(template, params) {
    return template.replace(/\{(\w+)\}/g, function (whole, name) {
      return params && params[name] !== undefined ? String(params[name]) : whole;
    });
  }

  /** The text of key in the page's language (English when Korean lacks it). */
  function t(key, params) {
    const template = has(key) ? MESSAGES[language][key] : MESSAGES.en[key];
    return format(template === undefined ? key : template, params);
  }

  /** Sets node's text to key's, and keeps the key so that a switch translates it again. */
  function translate(node, key, params) {
    node.dataset.i18n = key;
    if (params) node.dataset.i18nParams = JSON.stringify(params);
    else delete node.dataset.i18nParams;
    node.textContent = t(key, params);
    return node;
  }

  /**
   * What to show for a server message with a code: the page's translation of the code when
   * it has one (params fill it in), else the server's own text, as it is.
   */
  function serverMessage(node, code, message, params) {
    const values = Object.assign({ message: message }, params || {});
    const key = code ? "code." + code : null;
    if (key && MESSAGES.ko[key] !== undefined) return translate(node, key, values);
    delete node.dataset.i18n;
    delete node.dataset.i18nParams;
    node.textContent = message;
    return node;
  }

  function apply() {
    const doc = root.document;
    doc.documentElement.lang = language;
    doc.title = t("page.title");
    for (const node of doc.querySelectorAll("[data-i18n]")) {
      const params = node.dataset.i18nParams ? JSON.parse(node.dataset.i18nParams) : null;
      node.textContent = t(node.dataset.i18n, params);
    }
    for (const node of doc.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
    for (const node of doc.querySelectorAll("[data-i18n-label]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    }
    for (const node of doc.querySelectorAll("[data-language]")) {
      node.setAttribute("aria-pressed", String(node.dataset.language === language));
    }
    for (const listener of listeners) listener(language);
  }

  function setLanguage(next) {
    if (LANGUAGES.indexOf(next) === -1) return;
    language = next;
    try {
      root.localStorage.setItem(STORAGE_KEY, next);
    } catch (_) {
      // storage disabled: the choice lasts until the page is left
    }
    apply();
  }

  // In English, the server's own message is shown for each code.
  for (const key of Object.keys(MESSAGES.ko)) {
    if (key.startsWith("code.")) MESSAGES.en[key] = "{message}";
  }

  root.pageText = {
    get language() {
      return language;
    },
    t: t,
    translate: translate,
    serverMessage: serverMessage,
    setLanguage: setLanguage,
    apply: apply,
    onChange: function (listener) {
      listeners.push(listener);
    },
  };
})(globalThis);
