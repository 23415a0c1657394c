/**
 * markdown.js: Markdown of model output, rendered by markdown-it and sanitised by DOMPurify.
 *
 * Two locks, either of which alone keeps the page safe:
 *   1. markdown-it runs with html: false, so HTML in the text is escaped and shown as text, and
 *      links are kept only for http(s) and mailto URLs (a javascript: link stays visible text);
 *   2. DOMPurify then removes anything executable that could still be in the HTML.
 * Images are not rendered (a reply must not make the browser fetch from a URL the model chose).
 * Lists, headings, tables, quotes, code blocks, emphasis and links are.
 *
 * Both libraries are vendored in ./vendor/ (versions and licences in vendor/README.md): no build step.
 */

import DOMPurify from "./vendor/dompurify/purify.es.js";
import markdownit from "./vendor/markdown-it/markdown-it.esm.min.js";

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
const LINK_REL = "nofollow noopener noreferrer";

// "breaks": a single newline is a line break, as people write in a chat box.
const md = markdownit({ html: false, linkify: false, breaks: true, typographer: false });
md.disable("image");
md.validateLink = (url) => SAFE_URL.test(url.trim());

// A sanitizer of our own (not the shared default instance), so its hooks touch nothing else on the page.
const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", LINK_REL);
    node.setAttribute("target", "_blank");
  }
});
const PURIFY_OPTIONS = { ADD_ATTR: ["target"], FORBID_TAGS: ["img", "style", "form", "input"] };

/** Render Markdown ``source`` to an HTML string that is safe to assign to ``innerHTML``. */
export function renderMarkdown(source) {
  // Trimmed: markdown-it ends each block with a newline, which would be part of the reply's text on the page.
  return purify.sanitize(md.render(String(source ?? "")).trim(), PURIFY_OPTIONS);
}
