/*
 * Model answers as DOM nodes: markdown-it parses, DOMPurify sanitises, nothing else.
 *
 * Both libraries are vendored from the npm registry (api/static/vendor/, with their licences;
 * tools/vendor/ pins the versions and copies them) and loaded before this script.
 *
 * The answer comes from a language model, so it is untrusted text. Three layers keep its HTML
 * out of the DOM:
 *   1. markdown-it runs with html: false, so any tag the model writes is escaped as text;
 *   2. links are made only for absolute http(s) and mailto URLs (and for the page's own
 *      citation anchors), and images are shown as their alt text: the answer loads nothing;
 *   3. markdown-it's HTML is handed to DOMPurify with an allowlist of the tags and attributes
 *      the renderer produces, and comes back as a DocumentFragment: no innerHTML here.
 * No style attribute survives (the page's CSP forbids inline styles): table alignment is a class.
 *
 * A single line break is kept as one (breaks: true), headings start at h3 (the page has h1 and
 * each turn sits under it), and citations such as [1] or [1, 2] link to the turn's sources when
 * options.citationHref(n) gives a URL. Re-run it on the whole text as it streams: an unclosed
 * code fence simply runs to the end.
 *
 *   const fragment = renderMarkdown("**Hi** [1]", { citationHref: (n) => "#source-" + n });
 *   element.replaceChildren(fragment);
 */
(function (root) {
  "use strict";

  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
  const CITATION = /\[(\d{1,3}(?:[ \t]*,[ \t]*\d{1,3})*)\]/g;
  const ALIGNMENT = /^text-align:\s*(left|right|center)$/;
  const HANGUL_TAIL = /[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]+$/;

  const SANITIZE = {
    ALLOWED_TAGS: [
      "p", "br", "strong", "em", "s", "code", "pre", "blockquote", "hr",
      "h3", "h4", "h5", "h6", "ul", "ol", "li", "a",
      "div", "table", "thead", "tbody", "tr", "th", "td",
    ],
    ALLOWED_ATTR: ["href", "class", "target", "rel", "start"],
    // Every other allowed attribute's value would have to match ALLOWED_URI_REGEXP too.
    ADD_URI_SAFE_ATTR: ["target", "rel", "start"],
    ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };

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

  /** Splits the text tokens outside links at citations, into links to the turn's sources. */
  function citations(state) {
    const citationHref = state.env && state.env.citationHref;
    if (typeof citationHref !== "function") return;
    for (const block of state.tokens) {
      if (block.type !== "inline" || !block.children) continue;
      const children = [];
      let inLink = 0;
      for (const token of block.children) {
        if (token.type === "link_open") inLink++;
        if (token.type === "link_close") inLink--;
        if (token.type !== "text" || inLink > 0 || token.content.indexOf("[") === -1) {
          children.push(token);
          continue;
        }
        const text = token.content;
        let last = 0;
        const plain = function (content) {
          if (!content) return;
          const node = new state.Token("text", "", 0);
          node.content = content;
          children.push(node);
        };
        for (const match of text.matchAll(CITATION)) {
          plain(text.slice(last, match.index) + "[");
          match[1].split(",").forEach(function (part, index) {
            const number = parseInt(part.trim(), 10);
            if (index > 0) plain(", ");
            const href = citationHref(number);
            if (!href) {
              plain(String(number));
              return;
            }
            const open = new state.Token("link_open", "a", 1);
            open.attrs = [["href", href], ["class", "citation"]];
            open.meta = { citation: true };
            const label = new state.Token("text", "", 0);
            label.content = String(number);
            children.push(open, label, new state.Token("link_close", "a", -1));
          });
          last = match.index + match[0].length;
          plain("]");
        }
        plain(text.slice(last));
      }
      block.children = children;
    }
  }

  /**
   * A bare URL or e-mail address ends before the Korean that follows it: in
   * "minji.kim@example.com으로" the particle is not part of the address (linkify-it would
   * take it for an internationalised domain).
   */
  function withoutKoreanTail(match) {
    const tail = HANGUL_TAIL.exec(match.raw);
    if (!tail) return match;
    const cut = tail[0].length;
    if (cut >= match.raw.length || !match.url.endsWith(tail[0])) return null;
    match.raw = match.raw.slice(0, -cut);
    match.text = match.text.slice(0, -cut);
    match.url = match.url.slice(0, -cut);
    match.lastIndex -= cut;
    return match;
  }

  function createRenderer() {
    const md = root.markdownit({ html: false, linkify: true, breaks: true, typographer: false });
    const linkify = md.linkify;
    linkify.set({ fuzzyLink: false }); // "README.md" is a file name, not a site in Moldova
    const match = linkify.match.bind(linkify);
    const matchAtStart = linkify.matchAtStart.bind(linkify);
    linkify.match = function (text) {
      const found = match(text);
      return found && found.map(withoutKoreanTail).filter(Boolean);
    };
    linkify.matchAtStart = function (text) {
      const found = matchAtStart(text);
      return found && withoutKoreanTail(found);
    };
    md.validateLink = function (url) {
      return safeUrl(url) !== null;
    };
    md.core.ruler.push("citations", citations);
    md.core.ruler.push("demote_headings", function (state) {
      for (const token of state.tokens) {
        if (token.type === "heading_open" || token.type === "heading_close") {
          token.tag = "h" + Math.min(parseInt(token.tag.slice(1), 10) + 2, 6);
        }
      }
    });

    const rules = md.renderer.rules;
    const renderToken = function (tokens, index, options, env, self) {
      return self.renderToken(tokens, index, options);
    };
    rules.link_open = function (tokens, index, options, env, self) {
      const token = tokens[index];
      if (!(token.meta && token.meta.citation)) {
        token.attrSet("target", "_blank");
        token.attrSet("rel", "noopener noreferrer");
      }
      return renderToken(tokens, index, options, env, self);
    };
    // An image: its alt text only.
    rules.image = function (tokens, index, options, env, self) {
      return md.utils.escapeHtml(self.renderInlineAsText(tokens[index].children, options, env));
    };
    rules.table_open = function () {
      return '<div class="table-scroll"><table>\n';
    };
    rules.table_close = function () {
      return "</table></div>\n";
    };
    const aligned = function (tokens, index, options, env, self) {
      const token = tokens[index];
      const style = token.attrGet("style");
      if (style) {
        const alignment = ALIGNMENT.exec(style);
        token.attrs = token.attrs.filter(function (attribute) {
          return attribute[0] !== "style";
        });
        if (alignment) token.attrSet("class", "align-" + alignment[1]);
      }
      return renderToken(tokens, index, options, env, self);
    };
    rules.th_open = aligned;
    rules.td_open = aligned;
    return md;
  }

  let renderer = null;

  /**
   * The markdown as a sanitised DocumentFragment of the page's document. options.citationHref(n)
   * gives the href of the source cited as [n] (or null: the citation stays text).
   */
  function renderMarkdown(markdown, options) {
    const settings = options || {};
    if (!renderer) renderer = createRenderer();
    const env = {
      citationHref: typeof settings.citationHref === "function" ? settings.citationHref : null,
    };
    return root.DOMPurify.sanitize(renderer.render(String(markdown), env), SANITIZE);
  }

  root.renderMarkdown = renderMarkdown;
  root.safeUrl = safeUrl;
})(globalThis);
