// The example chat page. The live session is chatmodel_app's own JS client (chatmodel.js): it streams
// every run on the session to every tab, and resynchronises the messages after a reconnect. The REST API
// starts sessions; markdown.js renders replies (markdown-it without HTML, then DOMPurify). Model output never
// reaches innerHTML any other way: everything else is set with textContent.
const config = JSON.parse(document.getElementById("chat-config").textContent);
const [{ connect }, { renderMarkdown }] = await Promise.all([import(config.clientUrl), import(config.markdownUrl)]);

const $ = (id) => document.getElementById(id);
const log = $("chat-messages");
const input = $("chat-input");
const sendButton = $("chat-send");
const stopButton = $("chat-stop");
const statusLine = $("chat-status");
const demoTool = $("chat-demo-tool");

// Offered on a run when the toggle is on. The offline demo model calls it when a message names it
// ("What's the weather in Boston?"); answer with a result and it puts the result in a sentence.
const GET_WEATHER = {
  name: "get_weather",
  description: "The current weather in a place.",
  parameters: {
    type: "object",
    properties: { location: { type: "string", description: "A city, e.g. Boston" } },
    required: ["location"],
  },
};

const state = {
  session: config.session, // {uuid, chat_model, version}, once there is one
  chat: null, // the session's ChatModelSocket
  running: false, // a run is going on the session, started here or in another tab
  busy: false, // this page is sending
  turns: new Map(), // run_id -> the <li> of its assistant turn
  texts: new Map(), // run_id -> the text streamed so far
  runs: new Map(), // run_id -> {prompt_tokens, completion_tokens, cost, status, error, ...}
};
window.chatPage = state; // for the console and the browser tests

// --- rendering -------------------------------------------------------------------------------------

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function nearBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
}

function follow(wasNearBottom) {
  if (wasNearBottom) log.scrollTop = log.scrollHeight;
}

// Stored messages sit in seq order; turns still streaming (no seq yet) stay after them.
function place(li) {
  $("chat-empty")?.remove();
  const seq = parseFloat(li.dataset.seq);
  const next = [...log.children].find(
    (other) => other !== li && (other.dataset.pending === "true" || parseFloat(other.dataset.seq) > seq)
  );
  log.insertBefore(li, next || null);
}

function callsOf(message) {
  if (message.tool_calls?.length) return message.tool_calls;
  if (message.function_call) return [{ id: null, function: message.function_call }];
  return [];
}

function setReply(li, text) {
  li.querySelector('[data-testid="chat-reply"]').innerHTML = renderMarkdown(text);
}

function setCalls(li, calls) {
  let list = li.querySelector('[data-testid="chat-tool-calls"]');
  if (!calls.length) return list?.remove();
  if (!list) {
    list = el("ul", { class: "calls", "data-testid": "chat-tool-calls" });
    li.querySelector(".turn-meta").before(list);
  }
  list.replaceChildren(
    ...calls.map((call) =>
      el("li", { "data-call-id": call.id || "" }, `→ ${call.function?.name || "?"}(${call.function?.arguments || ""})`)
    )
  );
}

function setUsage(li, info) {
  const meta = li.querySelector(".turn-meta");
  const parts = [];
  if (info.status === "failed" || info.status === "incomplete") {
    setError(li, info.error, info.error_log);
  } else if (info.status) {
    const tokens =
      info.prompt_tokens != null ? `${info.prompt_tokens} in / ${info.completion_tokens} out` : "tokens unknown";
    parts.push(el("span", { "data-testid": "chat-tokens", title: "prompt / completion tokens" }, tokens));
    const cost = info.cost != null ? `$${Number(info.cost).toFixed(6)}` : "cost unknown";
    parts.push(el("span", { "data-testid": "chat-cost", title: "cost of this turn (USD)" }, cost));
    if (info.latency_ms != null) parts.push(el("span", { title: "latency" }, `${info.latency_ms} ms`));
    if (info.status === "cancelled") parts.push(el("span", { class: "badge" }, "stopped"));
  }
  meta.replaceChildren(...parts);
}

function setError(li, code, detail) {
  li.classList.add("failed");
  li.dataset.state = "failed";
  let box = li.querySelector('[data-testid="chat-error"]');
  if (!box) {
    box = el("div", { class: "error", "data-testid": "chat-error", role: "alert" });
    li.querySelector(".turn-meta").before(box);
  }
  box.textContent = `The run failed (${code || "error"})${detail ? `: ${detail}` : "."}`;
}

function assistantItem(attrs) {
  const li = el("li", { class: "message role-assistant", "data-role": "assistant", "data-testid": "chat-turn", ...attrs });
  li.append(
    el("div", { class: "who" }, "assistant"),
    el("div", { class: "reply markdown", "data-testid": "chat-reply" }),
    el("div", { class: "turn-meta" })
  );
  return li;
}

function callName(callId) {
  for (const message of state.chat?.messages || []) {
    for (const call of message.tool_calls || []) if (call.id === callId) return call.function?.name;
  }
  return null;
}

function messageItem(message) {
  if (message.role === "assistant") {
    const li = assistantItem({ "data-seq": message.seq, "data-state": "done" });
    if (message.run_id) li.dataset.runId = message.run_id;
    setReply(li, message.content ?? "");
    setCalls(li, callsOf(message));
    const info = state.runs.get(message.run_id);
    if (info) setUsage(li, info);
    return li;
  }
  const li = el("li", { class: `message role-${message.role}`, "data-seq": message.seq, "data-role": message.role });
  if (message.role === "user") {
    li.append(
      el("div", { class: "who" }, "you"),
      el("div", { class: "text", "data-testid": "chat-user-message" }, message.content ?? "")
    );
  } else {
    const name = message.name || callName(message.tool_call_id) || "function";
    li.dataset.testid = "chat-tool-result";
    li.append(el("div", { class: "who" }, `${name} returned`), el("div", { class: "text" }, message.content ?? ""));
  }
  return li;
}

// The stored conversation (chat.messages, in seq order): add what is not on the page yet.
function renderMessages(messages) {
  const bottom = nearBottom();
  for (const message of messages) {
    if (log.querySelector(`:scope > [data-seq="${message.seq}"]`)) continue;
    const turn = message.run_id && state.turns.get(message.run_id);
    if (turn && message.role === "assistant") {
      // The reply this page streamed: the stored message is the final word on its text.
      turn.dataset.seq = message.seq;
      delete turn.dataset.pending;
      setReply(turn, message.content ?? "");
      setCalls(turn, callsOf(message));
      place(turn);
      continue;
    }
    place(messageItem(message));
  }
  refresh();
  follow(bottom);
  document.dispatchEvent(new Event("chat:rendered")); // branches.js decorates the messages
}

function turnFor(runId) {
  let li = state.turns.get(runId) || log.querySelector(`:scope > [data-run-id="${CSS.escape(runId)}"]`);
  if (!li) {
    li = assistantItem({ "data-run-id": runId, "data-pending": "true", "data-state": "streaming" });
    li.classList.add("streaming");
    place(li);
  }
  state.turns.set(runId, li);
  return li;
}

function notice(code, message) {
  const bottom = nearBottom();
  $("chat-empty")?.remove();
  const li = el("li", { class: "notice error", "data-testid": "chat-error", "data-code": code || "error", role: "alert" });
  li.textContent = message || code || "Something went wrong.";
  log.appendChild(li);
  follow(bottom);
}

// --- function calls: answer the model's pending call from the page --------------------------------

function pendingCalls() {
  const messages = state.chat?.messages || [];
  const answered = new Set();
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message.role === "tool" || message.role === "function") {
      answered.add(message.tool_call_id || "");
      continue;
    }
    if (message.role !== "assistant") return null;
    const calls = callsOf(message).filter((call) => !answered.has(call.id || ""));
    return calls.length ? { message, calls } : null;
  }
  return null;
}

function refreshPendingCalls() {
  const pending = !state.running && !state.busy && pendingCalls();
  const li = pending && log.querySelector(`:scope > [data-seq="${pending.message.seq}"]`);
  // Rebuilt only when the pending calls change, so a half-typed answer survives other updates.
  const key = li ? `${pending.message.seq}:${pending.calls.map((call) => call.id).join(",")}` : "";
  if (key === (log.dataset.pendingCalls || "")) return;
  log.dataset.pendingCalls = key;
  for (const form of log.querySelectorAll("form.answer")) form.remove();
  if (!li) return;
  for (const call of pending.calls) {
    const form = el("form", { class: "answer", "data-testid": "tool-result-form" });
    const field = el("input", {
      type: "text",
      "data-testid": "tool-result-input",
      "aria-label": `Result of ${call.function?.name}`,
      // Short enough to show whole in the field's narrowest width (the label before it names the function).
      placeholder: "e.g. 13 degrees celsius",
    });
    const button = el("button", { type: "submit", "data-testid": "tool-result-send" }, "Send result");
    form.append(el("span", { class: "muted" }, `What ${call.function?.name} returned:`), field, button);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const content = field.value.trim();
      if (!content) return;
      const last = pending.calls.length === 1;
      const message = { role: call.id ? "tool" : "function", content };
      if (call.id) message.tool_call_id = call.id;
      else message.name = call.function?.name;
      // With several calls, the model runs once all of them are answered.
      send([message], { run: last, functions: call.function?.name === GET_WEATHER.name });
    });
    li.appendChild(form);
  }
}

// --- status ------------------------------------------------------------------------------------------

function refresh() {
  const connected = state.chat?.status === "open";
  const ready = state.session ? connected : config.canStart;
  sendButton.disabled = !ready || state.running || state.busy;
  stopButton.disabled = !connected || !state.running;
  let status;
  let text;
  if (!state.session) [status, text] = config.canStart ? ["ready", ""] : ["unavailable", "No published version."];
  else if (connected) [status, text] = state.running || state.busy ? ["running", "Running…"] : ["idle", "Connected."];
  else if (state.chat?.status === "closed") [status, text] = ["closed", "Disconnected."];
  else [status, text] = ["connecting", state.chat?.status === "reconnecting" ? "Reconnecting…" : "Connecting…"];
  statusLine.dataset.status = status;
  statusLine.textContent = text;
  refreshPendingCalls();
}

// --- the session -------------------------------------------------------------------------------------

async function loadRuns() {
  // Tokens, cost and failures of turns that were not streamed to this page (history, or missed while away).
  const response = await fetch(config.runsUrl.replace("00000000-0000-0000-0000-000000000000", state.session.uuid), {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  if (!response.ok) return;
  const bottom = nearBottom();
  for (const run of (await response.json()).results) {
    if (run.status === "in_progress") continue;
    state.runs.set(run.run_id, run);
    let li = log.querySelector(`:scope > [data-run-id="${CSS.escape(run.run_id)}"]`);
    if (!li && (run.status === "failed" || run.status === "incomplete")) {
      // A failed run stored no reply: show it after the last message it was given.
      li = assistantItem({ "data-run-id": run.run_id, "data-seq": (run.last_seq || 0) + 0.5 });
      place(li);
    }
    if (li && li.dataset.state !== "streaming") setUsage(li, run);
  }
  follow(bottom);
}

function openSocket() {
  state.chat = connect(state.session.uuid, {
    onStatus: refresh,
    onMessages: renderMessages,
    onRunStarted(event) {
      state.running = true;
      turnFor(event.run_id);
      refresh();
    },
    onSnapshot(text, event) {
      // Reloaded or reconnected mid-run: the reply so far, then the live deltas.
      state.running = true;
      const bottom = nearBottom();
      state.texts.set(event.run_id, text);
      setReply(turnFor(event.run_id), text);
      follow(bottom);
      refresh();
    },
    onDelta(delta, event) {
      // A tab that joined mid-run picks the run up from here.
      state.running = true;
      const bottom = nearBottom();
      const text = (state.texts.get(event.run_id) || "") + delta;
      state.texts.set(event.run_id, text);
      setReply(turnFor(event.run_id), text);
      follow(bottom);
    },
    onToolCallDelta(deltas, event) {
      state.running = true;
      const calls = state.chat.activeRun?.id === event.run_id ? state.chat.activeRun.toolCalls : [];
      setCalls(turnFor(event.run_id), calls.filter(Boolean));
    },
    onRunCompleted(event) {
      const li = turnFor(event.run_id);
      const info = { ...(event.usage || {}), cost: event.cost, status: event.status || "completed" };
      if (event.usage || event.cost != null) state.runs.set(event.run_id, info);
      li.classList.remove("streaming");
      li.dataset.state = "done";
      if (event.message) renderMessages([event.message]);
      if (state.runs.has(event.run_id)) setUsage(li, state.runs.get(event.run_id));
      state.running = false;
      refresh();
    },
    onRunFailed(event) {
      const li = turnFor(event.run_id);
      li.classList.remove("streaming");
      delete li.dataset.pending;
      const last = state.chat.messages.at(-1);
      li.dataset.seq = (last ? last.seq : 0) + 0.5;
      if (event.partial_content) setReply(li, event.partial_content);
      setError(li, event.error, event.error_log);
      state.running = false;
      refresh();
    },
    onError(event) {
      // Answers to this page's own requests are shown where they are awaited.
      if (!event.request_id) notice(event.code, event.message);
    },
  });
  state.chat.on("open", () => loadRuns().catch(() => {}));
  document.dispatchEvent(new CustomEvent("chat:socket", { detail: state.chat })); // branches.js listens
  refresh();
}

function opened(timeout = 15000) {
  const chat = state.chat;
  if (chat.status === "open") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const fail = (message) => {
      off();
      clearTimeout(timer);
      reject(Object.assign(new Error(message), { code: "disconnected" }));
    };
    const timer = setTimeout(() => fail("Could not connect to the session."), timeout);
    const off = chat.on("status", ({ status }) => {
      if (status === "open") {
        off();
        clearTimeout(timer);
        resolve();
      } else if (status === "closed") {
        fail("The connection closed.");
      }
    });
  });
}

// A chat refused on its first message leaves no trace: the page goes back to "new chat".
function forgetSession(uuid) {
  state.chat?.close();
  state.chat = null;
  state.session = null;
  history.replaceState(null, "", `${config.chatPageUrl}?chat_model=${encodeURIComponent(config.chatModel)}`);
  $("chat-session").textContent = "";
  document.querySelector(`#recent-sessions [data-uuid="${CSS.escape(uuid)}"]`)?.closest("li")?.remove();
}

// The rules the server would refuse a message for before storing it, checked before a chat is started for it.
function refusedUpFront(messages) {
  const tooLong = messages.find((message) => (message.content || "").length > config.maxMessageChars);
  if (!tooLong) return null;
  const error = new Error(
    `This message has ${tooLong.content.length.toLocaleString("en")} characters; ` +
      `at most ${config.maxMessageChars.toLocaleString("en")} are accepted.`
  );
  error.code = "invalid_messages";
  return error;
}

async function startSession(label) {
  const response = await fetch(config.createSessionUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": config.csrfToken },
    credentials: "same-origin",
    body: "{}",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `Starting a chat failed (HTTP ${response.status}).`);
    error.code = body.code || "session_failed";
    throw error;
  }
  state.session = { uuid: body.uuid, chat_model: body.chat_model, version: body.version };
  // Reloading (or bookmarking) the page comes back to this session.
  history.replaceState(null, "", `${config.chatPageUrl}?session=${encodeURIComponent(body.uuid)}`);
  $("chat-session").textContent = `session ${body.uuid} · v${body.version}`;
  const link = el("a", { href: `${config.chatPageUrl}?session=${body.uuid}`, "data-testid": "session-link", "data-uuid": body.uuid });
  link.append(el("span", { class: "label" }, label), el("span", { class: "muted" }, `just now · v${body.version}`));
  const item = el("li", { class: "selected" });
  item.appendChild(link);
  $("no-sessions")?.remove();
  $("recent-sessions")?.prepend(item);
  openSocket();
}

async function send(messages, { run = true, functions = false } = {}) {
  if (state.busy || state.running) return;
  state.busy = true;
  refresh();
  let started = null;
  try {
    const refused = refusedUpFront(messages);
    if (refused) throw refused;
    if (!state.session) {
      await startSession(messages[0].content || "");
      started = state.session.uuid;
    }
    await opened();
    await state.chat.addMessages(messages);
  } catch (error) {
    if (started) forgetSession(started);
    state.busy = false;
    notice(error.code, error.message);
    refresh();
    return;
  }
  if (messages[0].role === "user") input.value = "";
  if (run) {
    const offered = demoTool.checked || functions ? { functions: [GET_WEATHER] } : {};
    const final = await state.chat.run({ stream: true, ...offered }); // never rejects
    if (final?.type === "error") notice(final.code, final.message);
  }
  state.busy = false;
  refresh();
  input.focus();
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const content = input.value.trim();
  if (content) send([{ role: "user", content }]);
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("chat-form").requestSubmit();
  }
});
stopButton.addEventListener("click", () => state.chat?.cancel().catch(() => {}));

if (state.session) openSocket();
refresh();
