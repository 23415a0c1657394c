/**
 * markdown.js: a tiny, safe Markdown renderer for model output. No dependencies.
 *
 * Safety comes first and from one rule: the whole text is HTML-escaped before anything else, so
 * nothing the model writes can become markup. Only the tags below are then produced, from
 * patterns in the escaped text:
 *
 *   paragraphs (blank lines) and line breaks, **bold**, *italic*, `code`,
 *   fenced code blocks (```lang ... ```), and [links](https://...) with http/https only.
 *
 * Anything else (raw HTML, images, javascript: links, tables...) stays visible as text.
 */

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;
const CODE_SPAN = /(`[^`\n]+`)/;
// After escaping, a URL cannot hold '"', '<' or '>': it cannot leave the href attribute.
const LINK = /\[([^\][\n]+)\]\((https?:\/\/[^\s()]+)\)/gi;
const BOLD = /\*\*(?=\S)([^\n]*?\S)\*\*/g;
const ITALIC = /(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/g;
const SLOT = /\u0000(\d+)\u0000/g;

/** The text with &, <, >, " and ' replaced by entities. */
export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

function emphasis(text) {
  return text.replace(BOLD, "<strong>$1</strong>").replace(ITALIC, "$1<em>$2</em>");
}

// One line of escaped text: code spans are taken out first (nothing inside them is formatted),
// then links (their URL is kept out of the bold/italic pass), then emphasis.
function inline(line) {
  return line
    .split(CODE_SPAN)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${part.slice(1, -1)}</code>`;
      const slots = [];
      const withSlots = part.replace(LINK, (_, label, url) => {
        slots.push(`<a href="${url}" rel="nofollow noopener noreferrer" target="_blank">${emphasis(label)}</a>`);
        return `\u0000${slots.length - 1}\u0000`;
      });
      return emphasis(withSlots).replace(SLOT, (_, n) => slots[Number(n)]);
    })
    .join("");
}

/** Render Markdown ``source`` to an HTML string that is safe to assign to ``innerHTML``. */
export function renderMarkdown(source) {
  // NUL is the placeholder marker, so it may not come from the text.
  const text = escapeHtml(String(source ?? "").replace(/\u0000/g, "").replace(/\r\n?/g, "\n"));
  const html = [];
  let paragraph = [];
  let code = null; // the lines of an open fenced block
  let language = "";
  const flush = () => {
    if (paragraph.length) html.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
    paragraph = [];
  };
  const closeCode = () => {
    const cls = language ? ` class="language-${language}"` : "";
    html.push(`<pre><code${cls}>${code.join("\n")}</code></pre>`);
    code = null;
  };
  for (const line of text.split("\n")) {
    if (code !== null) {
      if (/^\s*```\s*$/.test(line)) closeCode();
      else code.push(line);
      continue;
    }
    const fence = FENCE.exec(line);
    if (fence) {
      flush();
      code = [];
      language = fence[1];
    } else if (!line.trim()) {
      flush();
    } else {
      paragraph.push(line);
    }
  }
  // A block still open (a reply being streamed, or a model that forgot to close it) ends here.
  if (code !== null) closeCode();
  flush();
  return html.join("");
}
