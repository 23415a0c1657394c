// Named conversations and feedback on the example chat page: the sidebar's titles, search box and
// rename / archive / delete actions, and 👍/👎 on each reply. chat.js owns the page; it announces its socket
// ("chat:socket") and each render ("chat:rendered"); this module decorates the sidebar and the replies. It talks
// to the REST API (list, search, rename, archive, delete) and rates replies through chatmodel.js (the socket's
// `feedback` frame). Text is set with textContent only.
const config = JSON.parse(document.getElementById("chat-config").textContent);
const log = document.getElementById("chat-messages");
const list = document.getElementById("recent-sessions");
const search = document.getElementById("session-search");
const ZERO = "00000000-0000-0000-0000-000000000000";

const page = () => window.chatPage;
const currentUuid = () => page()?.session?.uuid || config.session?.uuid || null;
const sessionApi = (uuid) => config.sessionApiUrl.replace(ZERO, uuid);
const feedbackBySeq = new Map(); // seq -> {rating, comment} of the open session

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(url, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", "X-CSRFToken": config.csrfToken };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data && (data.detail || Object.values(data).flat().join(" "));
    throw Object.assign(new Error(detail || `HTTP ${response.status}`), { code: data?.code || "error" });
  }
  return data;
}

function notice(message) {
  const li = el("li", { class: "notice error", "data-testid": "chat-error", role: "alert" }, message);
  log.appendChild(li);
}

// --- the sidebar ------------------------------------------------------------------------------------------

function itemUuid(li) {
  return li.dataset.uuid || li.querySelector("[data-uuid]")?.dataset.uuid || null;
}

function setTitle(li, title) {
  if (!title) return;
  li.querySelector(".label").textContent = title;
  li.dataset.titled = "true";
}

function action(text, testid, title, onClick) {
  const b = el("button", { type: "button", class: "session-action", "data-testid": testid, title, "aria-label": title }, text);
  b.addEventListener("click", (event) => {
    event.preventDefault();
    event.stopPropagation();
    onClick();
  });
  return b;
}

function decorateItem(li) {
  const uuid = itemUuid(li);
  if (!uuid || li.querySelector(".session-actions")) return;
  li.dataset.uuid = uuid;
  const label = li.querySelector(".label");
  if (label) label.dataset.testid = "session-title"; // chat.js's item for a chat it starts has none
  const box = el("span", { class: "session-actions" });
  box.append(
    action("✎", "session-rename", "Rename", () => startRename(li)),
    action("🗄", "session-archive", "Archive", () => archive(li)),
    action("🗑", "session-delete", "Delete", () => remove(li))
  );
  li.appendChild(box);
}

function decorateList() {
  for (const li of list?.querySelectorAll(":scope > li") || []) decorateItem(li);
}

function startRename(li) {
  if (li.querySelector(".session-rename-input")) return;
  const label = li.querySelector(".label");
  const input = el("input", {
    type: "text",
    class: "session-rename-input",
    "data-testid": "session-title-input",
    maxlength: "200",
    "aria-label": "Chat title",
  });
  input.value = label.textContent;
  label.hidden = true;
  li.querySelector("a").before(input);
  input.focus();
  input.select();
  const done = () => {
    input.remove();
    label.hidden = false;
  };
  input.addEventListener("keydown", async (event) => {
    if (event.key === "Escape") done();
    if (event.key !== "Enter") return;
    event.preventDefault();
    try {
      const session = await api(sessionApi(itemUuid(li)), { method: "PATCH", body: { title: input.value } });
      done();
      setTitle(li, session.title);
    } catch (error) {
      done();
      notice(error.message);
    }
  });
  input.addEventListener("blur", () => setTimeout(done, 150));
}

async function archive(li) {
  try {
    await api(sessionApi(itemUuid(li)), { method: "PATCH", body: { archived: true } });
    li.remove();
  } catch (error) {
    notice(error.message);
  }
}

async function remove(li) {
  const uuid = itemUuid(li);
  if (!window.confirm("Delete this chat and all its messages?")) return;
  try {
    await api(sessionApi(uuid), { method: "DELETE" });
  } catch (error) {
    notice(error.message);
    return;
  }
  li.remove();
  if (uuid === currentUuid()) {
    page()?.chat?.close();
    window.location.href = `${config.chatPageUrl}?chat_model=${encodeURIComponent(config.chatModel)}`;
  }
}

// --- search --------------------------------------------------------------------------------------------

const original = new Map(); // uuid -> the server-rendered <li> (its label is the first message when untitled)
let searchTimer = null;
let searchSeq = 0;

function itemFor(session) {
  const known = original.get(session.uuid);
  if (known) return known;
  const li = el("li", { "data-uuid": session.uuid, "data-titled": session.title ? "true" : "false" });
  const link = el("a", { href: `${config.chatPageUrl}?session=${session.uuid}`, "data-testid": "session-link", "data-uuid": session.uuid });
  link.append(
    el("span", { class: "label", "data-testid": "session-title" }, session.title || "Untitled chat"),
    el("span", { class: "muted" }, `v${session.version}`)
  );
  li.appendChild(link);
  if (session.uuid === currentUuid()) li.classList.add("selected");
  decorateItem(li);
  return li;
}

async function runSearch() {
  const q = search.value.trim();
  const mine = ++searchSeq;
  const params = new URLSearchParams({ chat_model: config.chatModel, limit: "50" });
  if (q) params.set("q", q);
  let page_;
  try {
    page_ = await api(`${config.sessionsApiUrl}?${params}`);
  } catch (error) {
    notice(error.message);
    return;
  }
  if (mine !== searchSeq) return; // a newer search was typed meanwhile
  list.replaceChildren(...page_.results.map(itemFor));
  if (!page_.results.length) {
    list.appendChild(el("li", { class: "muted", "data-testid": "session-search-empty" }, q ? "No chat matches." : "None yet."));
  }
  list.dataset.query = q;
}

if (search && list) {
  for (const li of list.querySelectorAll(":scope > li[data-uuid]")) original.set(li.dataset.uuid, li);
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(runSearch, 250);
  });
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(searchTimer);
      runSearch();
    }
  });
}

// chat.js prepends the item of a chat it starts: decorate it too.
if (list) new MutationObserver(decorateList).observe(list, { childList: true });
decorateList();

// --- the title after the first exchange ------------------------------------------------------------------

function currentItem() {
  const uuid = currentUuid();
  return uuid ? list?.querySelector(`:scope > li [data-uuid="${CSS.escape(uuid)}"]`)?.closest("li") : null;
}

async function refreshTitle() {
  const li = currentItem();
  if (!li || li.dataset.titled === "true") return;
  try {
    setTitle(li, (await api(sessionApi(currentUuid()))).title);
  } catch {
    // The title is a nicety: the label (the first message) stays.
  }
}

// --- feedback on replies ---------------------------------------------------------------------------------

function showRating(bar, feedback) {
  const rating = feedback?.rating || "";
  bar.dataset.rating = rating;
  for (const b of bar.querySelectorAll("[data-rating-value]")) {
    b.setAttribute("aria-pressed", String(b.dataset.ratingValue === rating));
  }
  const comment = bar.querySelector("[data-testid='feedback-comment']");
  comment.hidden = !rating;
  if (feedback && document.activeElement !== comment) comment.value = feedback.comment || "";
}

async function rate(seq, rating, comment) {
  const chat = page()?.chat;
  if (!chat) return;
  try {
    const event = await chat.feedback(seq, rating, comment);
    feedbackBySeq.set(seq, event.feedback);
    decorateReplies();
  } catch (error) {
    notice(error.event?.message || error.message);
  }
}

function feedbackBar(seq) {
  const bar = el("div", { class: "feedback", "data-testid": "feedback" });
  const thumb = (value, text, title) => {
    const b = el("button", { type: "button", class: "feedback-button", "data-rating-value": value, "data-testid": `feedback-${value}`, title, "aria-label": title }, text);
    b.addEventListener("click", () => {
      // Pressing the chosen thumb again takes the rating back.
      const now = feedbackBySeq.get(seq)?.rating;
      rate(seq, now === value ? null : value, bar.querySelector("[data-testid='feedback-comment']").value);
    });
    return b;
  };
  const comment = el("input", {
    type: "text",
    class: "feedback-comment",
    "data-testid": "feedback-comment",
    maxlength: "2000",
    placeholder: "Add a comment (Enter saves)",
    "aria-label": "Feedback comment",
  });
  comment.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const rating = feedbackBySeq.get(seq)?.rating;
    if (rating) rate(seq, rating, comment.value);
  });
  bar.append(thumb("up", "👍", "Good reply"), thumb("down", "👎", "Bad reply"), comment);
  return bar;
}

function decorateReplies() {
  for (const li of log.querySelectorAll(":scope > li.role-assistant[data-seq]")) {
    const seq = Number(li.dataset.seq);
    if (!Number.isInteger(seq) || li.dataset.state === "streaming" || li.dataset.pending) continue;
    let bar = li.querySelector(":scope > .feedback");
    if (!bar) {
      bar = feedbackBar(seq);
      li.appendChild(bar);
    }
    const stored = page()?.chat?.messages?.find((m) => m.seq === seq);
    if (stored && stored.feedback !== undefined && !feedbackBySeq.has(seq)) feedbackBySeq.set(seq, stored.feedback);
    showRating(bar, feedbackBySeq.get(seq));
  }
}

async function loadFeedback() {
  // The messages page carries each reply's feedback (the socket's path may not): read it once per open.
  const uuid = currentUuid();
  if (!uuid) return;
  try {
    const data = await api(`${sessionApi(uuid)}messages/?order=desc&limit=200`);
    for (const m of data.results) if (m.feedback !== undefined) feedbackBySeq.set(m.seq, m.feedback);
  } catch {
    return;
  }
  decorateReplies();
}

function watch(chat) {
  chat.on("open", () => loadFeedback());
  chat.on("run.completed", () => refreshTitle());
  chat.on("feedback.updated", (event) => {
    feedbackBySeq.set(event.message_seq, event.feedback);
    decorateReplies();
  });
  chat.on("session.updated", (event) => {
    const li = currentItem();
    if (!li) return;
    setTitle(li, event.title);
    if (event.archived) li.remove();
  });
}

document.addEventListener("chat:socket", (event) => watch(event.detail));
document.addEventListener("chat:rendered", () => decorateReplies());
if (page()?.chat) watch(page().chat);
