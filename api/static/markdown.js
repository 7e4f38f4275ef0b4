/*
 * A small markdown renderer for model answers that builds DOM nodes and nothing else.
 *
 * The answer comes from a language model, so it is untrusted text: every character of it
 * ends up in a text node (createTextNode / textContent), never in innerHTML, so no HTML
 * the model writes can reach the DOM. Links are made only for absolute http(s) and mailto
 * URLs, and open in a new tab with rel="noopener noreferrer".
 *
 * Supported, as models write them: paragraphs (a single line break is kept as a line
 * break), ATX headings, **bold**, *italic*, ~~strikethrough~~, `inline code`, fenced code
 * blocks, bullet and numbered lists (nested by indentation), block quotes, horizontal
 * rules, pipe tables, [links](https://...), <https://autolinks>, bare URLs and e-mail
 * addresses, and citations such as [1] (linked when options.citationHref(n) gives a URL).
 * Images are shown as their alt text. It is meant to be re-run on the whole text as it
 * streams in: an unclosed code fence simply runs to the end.
 *
 *   const fragment = renderMarkdown("**Hi** [1]", { citationHref: (n) => "#source-" + n });
 *   element.replaceChildren(fragment);
 */
(function (root) {
  "use strict";

  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

  const FENCE = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^ {0,3}>/;
  const BULLET = /^( *)([-*+])(?:[ \t]+(.*))?$/;
  const ORDERED = /^( *)(\d{1,9})([.)])(?:[ \t]+(.*))?$/;
  const TABLE_DIVIDER = /^ *\|? *:?-+:? *(?:\| *:?-+:? *)*\|? *$/;
  const ESCAPABLE = /[!-/:-@[-`{-~]/;
  const WORD = /[\p{L}\p{N}]/u;
  // Sticky (y): matched at a given index of the text with matchAt, without slicing it.
  const CITATION = /\[(\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*)\]/y;
  const AUTOLINK = /<((?:https?:\/\/|mailto:)[^\s<>]+|[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+)>/iy;
  const BARE_URL = /https?:\/\/[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+/iy;
  const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/y;

  /** The URL as the browser will use it, if it is absolute http(s) or mailto; else null. */
  function safeUrl(raw) {
    const text = String(raw).trim();
    if (!/^(?:https?:\/\/|mailto:)/i.test(text)) return null;
    let url;
    try {
      url = new URL(text);
    } catch (_) {
      return null;
    }
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  }

  function matchAt(sticky, text, index) {
    sticky.lastIndex = index;
    return sticky.exec(text);
  }

  function isBlank(line) {
    return line.trim() === "";
  }

  function listItem(line) {
    if (RULE.test(line)) return null; // "- - -" and "* * *" are rules, not items
    let match = BULLET.exec(line);
    if (match) {
      const text = match[3] || "";
      return {
        ordered: false,
        marker: match[2],
        indent: match[1].length,
        content: text ? line.length - text.length : line.length + 1,
        text: text,
      };
    }
    match = ORDERED.exec(line);
    if (match) {
      const text = match[4] || "";
      return {
        ordered: true,
        marker: match[3],
        number: parseInt(match[2], 10),
        indent: match[1].length,
        content: text ? line.length - text.length : line.length + 1,
        text: text,
      };
    }
    return null;
  }

  function isTableStart(lines, i) {
    return (
      i + 1 < lines.length &&
      lines[i].indexOf("|") !== -1 &&
      TABLE_DIVIDER.test(lines[i + 1]) &&
      tableCells(lines[i + 1]).length === tableCells(lines[i]).length
    );
  }

  /** Whether line i interrupts a paragraph (so "2024. 3월부터" inside one stays text). */
  function startsBlock(lines, i) {
    const line = lines[i];
    const item = listItem(line);
    return (
      FENCE.test(line) ||
      HEADING.test(line) ||
      RULE.test(line) ||
      QUOTE.test(line) ||
      (item !== null && item.text !== "" && (!item.ordered || item.number === 1)) ||
      isTableStart(lines, i)
    );
  }

  function leadingSpaces(line) {
    return line.length - line.trimStart().length;
  }

  function dedent(line, count) {
    return line.slice(Math.min(count, leadingSpaces(line)));
  }

  // --- blocks ---------------------------------------------------------------------------

  function renderBlocks(lines, parent, ctx, tight) {
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (isBlank(line)) {
        i++;
        continue;
      }
      let match = FENCE.exec(line);
      if (match) {
        i = renderCodeBlock(lines, i, match, parent, ctx);
        continue;
      }
      match = HEADING.exec(line);
      if (match) {
        const level = Math.min(match[1].length + 2, 6); // the page has h1, each turn sits under it
        const heading = ctx.doc.createElement("h" + level);
        renderInline((match[2] || "").trim(), heading, ctx);
        parent.appendChild(heading);
        i++;
        continue;
      }
      if (RULE.test(line)) {
        parent.appendChild(ctx.doc.createElement("hr"));
        i++;
        continue;
      }
      if (QUOTE.test(line)) {
        const quoted = [];
        while (i < lines.length && QUOTE.test(lines[i])) {
          quoted.push(lines[i].replace(/^ {0,3}> ?/, ""));
          i++;
        }
        const quote = ctx.doc.createElement("blockquote");
        renderBlocks(quoted, quote, ctx, false);
        parent.appendChild(quote);
        continue;
      }
      if (listItem(line)) {
        i = renderList(lines, i, parent, ctx);
        continue;
      }
      if (isTableStart(lines, i)) {
        i = renderTable(lines, i, parent, ctx);
        continue;
      }
      const paragraph = [line];
      i++;
      while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines, i)) {
        paragraph.push(lines[i]);
        i++;
      }
      renderParagraph(paragraph, parent, ctx, tight);
    }
  }

  function renderParagraph(lines, parent, ctx, tight) {
    let target = parent;
    if (tight) {
      // In a list item: no <p>, and a second paragraph starts on a new line.
      if (parent.childNodes.length) parent.appendChild(ctx.doc.createElement("br"));
    } else {
      target = ctx.doc.createElement("p");
      parent.appendChild(target);
    }
    lines.forEach(function (line, index) {
      if (index > 0) target.appendChild(ctx.doc.createElement("br"));
      // A hard break's marker (two spaces or a backslash) is a line break like any other.
      renderInline(line.trim().replace(/\\$/, ""), target, ctx);
    });
  }

  function renderCodeBlock(lines, start, match, parent, ctx) {
    const indent = match[1].length;
    const fence = match[2];
    const character = fence[0] === "`" ? "`" : "~";
    const closing = new RegExp("^ {0,3}" + character + "{" + fence.length + ",}[ \\t]*$");
    const body = [];
    let i = start + 1;
    while (i < lines.length && !closing.test(lines[i])) {
      body.push(dedent(lines[i], indent));
      i++;
    }
    // Still streaming (no closing fence yet): the text's last line break is not code.
    if (i === lines.length && body.length && body[body.length - 1] === "") body.pop();
    const pre = ctx.doc.createElement("pre");
    const code = ctx.doc.createElement("code");
    const language = match[3].replace(/[^\w+-]/g, "");
    if (language) code.className = "language-" + language;
    code.textContent = body.join("\n");
    pre.appendChild(code);
    parent.appendChild(pre);
    return i + 1; // past the closing fence (or the end, while it is still streaming)
  }

  function renderList(lines, start, parent, ctx) {
    const first = listItem(lines[start]);
    const list = ctx.doc.createElement(first.ordered ? "ol" : "ul");
    if (first.ordered && first.number !== 1) list.start = first.number;
    const sameList = function (item) {
      return (
        item !== null &&
        item.ordered === first.ordered &&
        item.marker === first.marker &&
        item.indent < first.content
      );
    };
    const items = [];
    let current = null;
    let i = start;
    while (i < lines.length) {
      const line = lines[i];
      const item = listItem(line);
      if (sameList(item)) {
        current = { lines: [item.text], content: item.content };
        items.push(current);
        i++;
        continue;
      }
      if (isBlank(line)) {
        // The list goes on past blank lines if what follows belongs to it.
        let next = i + 1;
        while (next < lines.length && isBlank(lines[next])) next++;
        if (
          next < lines.length &&
          (sameList(listItem(lines[next])) || leadingSpaces(lines[next]) >= current.content)
        ) {
          current.lines.push("");
          i++;
          continue;
        }
        break;
      }
      if (leadingSpaces(line) >= current.content || (item && item.indent > first.indent)) {
        current.lines.push(dedent(line, current.content)); // nested content
        i++;
        continue;
      }
      if (item || startsBlock(lines, i)) break;
      current.lines.push(line.trim()); // a lazy continuation of the item's text
      i++;
    }
    items.forEach(function (entry) {
      const li = ctx.doc.createElement("li");
      renderBlocks(entry.lines, li, ctx, true);
      list.appendChild(li);
    });
    parent.appendChild(list);
    return i;
  }

  function tableCells(line) {
    let row = line.trim();
    if (row.startsWith("|")) row = row.slice(1);
    if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
    return row.split(/(?<!\\)\|/).map(function (cell) {
      return cell.trim().replace(/\\\|/g, "|");
    });
  }

  function renderTable(lines, start, parent, ctx) {
    const header = tableCells(lines[start]);
    const alignments = tableCells(lines[start + 1]).map(function (cell) {
      const left = cell.startsWith(":");
      const right = cell.endsWith(":");
      return left && right ? "center" : right ? "right" : left ? "left" : "";
    });
    const wrapper = ctx.doc.createElement("div");
    wrapper.className = "table-scroll";
    const table = ctx.doc.createElement("table");
    const addRow = function (section, cells, tag) {
      const row = ctx.doc.createElement("tr");
      header.forEach(function (_, column) {
        const cell = ctx.doc.createElement(tag);
        if (alignments[column]) cell.className = "align-" + alignments[column];
        renderInline(cells[column] || "", cell, ctx);
        row.appendChild(cell);
      });
      section.appendChild(row);
    };
    const head = ctx.doc.createElement("thead");
    addRow(head, header, "th");
    table.appendChild(head);
    const body = ctx.doc.createElement("tbody");
    let i = start + 2;
    while (i < lines.length && !isBlank(lines[i]) && lines[i].indexOf("|") !== -1) {
      addRow(body, tableCells(lines[i]), "td");
      i++;
    }
    if (body.childNodes.length) table.appendChild(body);
    wrapper.appendChild(table);
    parent.appendChild(wrapper);
    return i;
  }

  // --- inline ---------------------------------------------------------------------------

  function link(ctx, href, className) {
    const anchor = ctx.doc.createElement("a");
    anchor.href = href;
    if (className) {
      anchor.className = className;
    } else {
      anchor.target = "_blank";
      anchor.rel = "noopener noreferrer";
    }
    return anchor;
  }

  /** The end of the code span that starts at i (a run of n backticks), or -1. */
  function codeSpanEnd(text, i, n) {
    let j = i + n;
    while ((j = text.indexOf("`", j)) !== -1) {
      let run = 0;
      while (text[j + run] === "`") run++;
      if (run === n) return j;
      j += run;
    }
    return -1;
  }

  /** Where the closing delimiter of emphasis opened at i is, or -1. */
  function closingDelimiter(text, i, delimiter) {
    const single = delimiter.length === 1;
    let j = i + delimiter.length;
    while (j < text.length) {
      const ch = text[j];
      if (ch === "\\") {
        j += 2;
        continue;
      }
      if (ch === "`") {
        let run = 0;
        while (text[j + run] === "`") run++;
        const end = codeSpanEnd(text, j, run);
        j = end === -1 ? j + run : end + run;
        continue;
      }
      if (text.startsWith(delimiter, j) && !/\s/.test(text[j - 1])) {
        const after = text[j + delimiter.length];
        const doubled = single && after === delimiter;
        const intraword = delimiter[0] === "_" && after !== undefined && WORD.test(after);
        if (!doubled && !intraword) return j;
      }
      if (single && text[j] === delimiter && text[j + 1] === delimiter) {
        j += 2; // a ** inside *...* belongs to a nested strong
        continue;
      }
      j++;
    }
    return -1;
  }

  /** The index just past the "]" that closes the "[" at i, or -1. */
  function closingBracket(text, i) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      if (text[j] === "\\") j++;
      else if (text[j] === "[") depth++;
      else if (text[j] === "]" && --depth === 0) return j + 1;
    }
    return -1;
  }

  /** The destination of "(url "title")" starting at i, and the index past ")"; or null. */
  function linkDestination(text, i) {
    if (text[i] !== "(") return null;
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      if (text[j] === "\\") j++;
      else if (text[j] === "(") depth++;
      else if (text[j] === ")" && --depth === 0) {
        let destination = text.slice(i + 1, j).trim();
        if (destination.startsWith("<")) {
          const close = destination.indexOf(">");
          destination = destination.slice(1, close === -1 ? undefined : close);
        } else {
          destination = destination.split(/\s+/)[0] || "";
        }
        return { url: destination, end: j + 1 };
      }
    }
    return null;
  }

  function count(text, character) {
    return text.split(character).length - 1;
  }

  /** A bare URL without the punctuation of the sentence around it. */
  function trimUrl(url) {
    const punctuation = /[.,;:!?'*_~]+$/;
    let trimmed = url.replace(punctuation, "");
    // A ")" that closes a parenthesis opened before the URL is not part of it.
    while (trimmed.endsWith(")") && count(trimmed, "(") < count(trimmed, ")")) {
      trimmed = trimmed.slice(0, -1).replace(punctuation, "");
    }
    return trimmed;
  }

  function renderInline(text, parent, ctx) {
    const doc = ctx.doc;
    let plain = "";
    const flush = function () {
      if (plain) parent.appendChild(doc.createTextNode(plain));
      plain = "";
    };
    const emphasis = [
      ["***", ["strong", "em"]],
      ["___", ["strong", "em"]],
      ["**", ["strong"]],
      ["__", ["strong"]],
      ["~~", ["del"]],
      ["*", ["em"]],
      ["_", ["em"]],
    ];
    let i = 0;
    outer: while (i < text.length) {
      const ch = text[i];
      const wordBefore = i > 0 && WORD.test(text[i - 1]);

      if (ch === "\\" && i + 1 < text.length && ESCAPABLE.test(text[i + 1])) {
        plain += text[i + 1];
        i += 2;
        continue;
      }

      if (ch === "`") {
        let run = 0;
        while (text[i + run] === "`") run++;
        const end = codeSpanEnd(text, i, run);
        if (end === -1) {
          plain += text.slice(i, i + run);
          i += run;
          continue;
        }
        let content = text.slice(i + run, end);
        if (/^ .*[^ ].* $/.test(content)) content = content.slice(1, -1);
        flush();
        const code = doc.createElement("code");
        code.textContent = content;
        parent.appendChild(code);
        i = end + run;
        continue;
      }

      if (ch === "*" || ch === "_" || ch === "~") {
        for (const [delimiter, tags] of emphasis) {
          if (!text.startsWith(delimiter, i)) continue;
          const opensBeforeText = /\S/.test(text[i + delimiter.length] || "");
          if (!opensBeforeText || (delimiter[0] === "_" && wordBefore)) continue;
          const end = closingDelimiter(text, i, delimiter);
          if (end === -1) continue;
          flush();
          let outermost = null;
          let innermost = parent;
          for (const tag of tags) {
            const element = doc.createElement(tag);
            if (!outermost) outermost = element;
            else innermost.appendChild(element);
            innermost = element;
          }
          renderInline(text.slice(i + delimiter.length, end), innermost, ctx);
          parent.appendChild(outermost);
          i = end + delimiter.length;
          continue outer;
        }
        let run = 0;
        while (text[i + run] === ch) run++;
        plain += text.slice(i, i + run); // an unmatched run stays text, all of it
        i += run;
        continue;
      }

      if (ch === "!" && text[i + 1] === "[") {
        // An image: its alt text only; the model's answer loads nothing.
        const close = closingBracket(text, i + 1);
        const destination = close === -1 ? null : linkDestination(text, close);
        if (destination) {
          plain += text.slice(i + 2, close - 1);
          i = destination.end;
          continue;
        }
      }

      if (ch === "[") {
        const close = closingBracket(text, i);
        const destination = close === -1 ? null : linkDestination(text, close);
        if (destination) {
          const label = text.slice(i + 1, close - 1);
          const href = ctx.inLink ? null : safeUrl(destination.url);
          flush();
          if (href) {
            const anchor = link(ctx, href);
            renderInline(label, anchor, Object.assign({}, ctx, { inLink: true }));
            parent.appendChild(anchor);
          } else {
            renderInline(label, parent, ctx); // not a link: the text alone
          }
          i = destination.end;
          continue;
        }
        const citation = matchAt(CITATION, text, i);
        if (citation && ctx.citationHref && !ctx.inLink) {
          flush();
          parent.appendChild(doc.createTextNode("["));
          citation[1].split(",").forEach(function (part, index) {
            const number = parseInt(part.trim(), 10);
            if (index > 0) parent.appendChild(doc.createTextNode(", "));
            const href = ctx.citationHref(number);
            if (href) {
              const anchor = link(ctx, href, "citation");
              anchor.textContent = String(number);
              parent.appendChild(anchor);
            } else {
              parent.appendChild(doc.createTextNode(String(number)));
            }
          });
          parent.appendChild(doc.createTextNode("]"));
          i += citation[0].length;
          continue;
        }
      }

      if (ch === "<" && !ctx.inLink) {
        const match = matchAt(AUTOLINK, text, i);
        if (match) {
          const target = match[1];
          const href = safeUrl(/^(?:https?:|mailto:)/i.test(target) ? target : "mailto:" + target);
          if (href) {
            flush();
            const anchor = link(ctx, href);
            anchor.textContent = target.replace(/^mailto:/i, "");
            parent.appendChild(anchor);
            i += match[0].length;
            continue;
          }
        }
      }

      if (!ctx.inLink && !wordBefore && (ch === "h" || ch === "H")) {
        const match = matchAt(BARE_URL, text, i);
        const url = match ? trimUrl(match[0]) : "";
        const href = url && /^https?:\/\/[^/?#]/i.test(url) ? safeUrl(url) : null;
        if (href) {
          flush();
          const anchor = link(ctx, href);
          anchor.textContent = url;
          parent.appendChild(anchor);
          i += url.length;
          continue;
        }
      }

      if (!ctx.inLink && !wordBefore && text[i - 1] !== "." && WORD.test(ch)) {
        const match = matchAt(EMAIL, text, i);
        const href = match ? safeUrl("mailto:" + match[0]) : null;
        if (href) {
          flush();
          const anchor = link(ctx, href);
          anchor.textContent = match[0];
          parent.appendChild(anchor);
          i += match[0].length;
          continue;
        }
      }

      plain += ch;
      i++;
    }
    flush();
  }

  /**
   * The markdown as a DocumentFragment. options.citationHref(n) gives the href of the
   * source cited as [n] (or null: the citation stays text); options.document is the
   * document to build in (the page's by default).
   */
  function renderMarkdown(markdown, options) {
    const settings = options || {};
    const doc = settings.document || root.document;
    const ctx = {
      doc: doc,
      citationHref: typeof settings.citationHref === "function" ? settings.citationHref : null,
      inLink: false,
    };
    const lines = String(markdown)
      .replace(/\r\n?/g, "\n")
      .split("\n")
      .map(function (line) {
        // Leading tabs count as four spaces, for list nesting and code fences.
        return line.replace(/^\t+/, function (tabs) {
          return "    ".repeat(tabs.length);
        });
      });
    const fragment = doc.createDocumentFragment();
    renderBlocks(lines, fragment, ctx, false);
    return fragment;
  }

  root.renderMarkdown = renderMarkdown;
  root.safeUrl = safeUrl;
  if (typeof module === "object" && module && module.exports) {
    module.exports = { renderMarkdown: renderMarkdown, safeUrl: safeUrl };
  }
})(globalThis);
