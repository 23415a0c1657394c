// The admin playground: chat with one version over the session websocket (chatmodel.js), streamed,
// with function calls, tokens and cost per turn. Element ids and data-testids are stable for browser tests.
const config = JSON.parse(document.getElementById("playground-config").textContent);
const { connect } = await import(config.clientUrl);

const $ = (id) => document.getElementById(id);
const log = $("playground-messages");
const input = $("playground-input");
const role = $("playground-role");
const send = $("playground-send");
const stop = $("playground-cancel");
const status = $("playground-status");
const totalTokens = $("playground-total-tokens");
const totalCost = $("playground-total-cost");

let connected = false;
let running = false;
let turn = null; // the streaming assistant turn: {li, runId, sentAt, firstTokenAt}
const totals = parseTotals();

function parseTotals() {
  const match = /(\d+) in \/ (\d+) out/.exec(totalTokens.textContent);
  return { prompt: match ? +match[1] : 0, completion: match ? +match[2] : 0, cost: parseFloat(totalCost.dataset.cost) || 0 };
}

function setStatus(state, text) {
  status.dataset.status = state;
  status.textContent = text;
  status.classList.toggle("error", state === "error");
}

function refreshButtons() {
  send.disabled = !connected || running;
  stop.disabled = !connected || !running;
}

function element(tag, attrs = {}, text) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

function scrollDown() {
  log.lastElementChild?.scrollIntoView({ block: "end" });
}

function formatCalls(calls) {
  return (calls || []).map((c) => `→ ${c.function.name}(${c.function.arguments})`).join("\n");
}

function setCalls(li, calls) {
  let pre = li.querySelector('[data-testid="playground-tool-calls"]');
  const text = formatCalls(calls);
  if (!text) return;
  if (!pre) {
    pre = element("pre", { class: "chatmodel-pre calls", "data-testid": "playground-tool-calls" });
    li.appendChild(pre);
  }
  pre.textContent = text;
}

// A stored message, as the server renders it (user and function turns; assistant turns arrive as runs).
function messageItem(message) {
  const assistant = message.role === "assistant";
  const li = element("li", { class: `role-${message.role}`, "data-seq": message.seq, "data-role": message.role });
  if (assistant) {
    li.classList.add("playground-turn");
    li.dataset.testid = "playground-turn";
    if (message.run_id) li.dataset.runId = message.run_id;
  }
  const meta = element("div", { class: "meta" });
  meta.appendChild(element("span")).appendChild(element("strong", {}, message.role));
  if (message.name) meta.lastChild.append(` (${message.name})`);
  li.appendChild(meta);
  li.appendChild(
    element("div", { class: "content", "data-testid": assistant ? "playground-reply" : "playground-message" }, message.content ?? "")
  );
  setCalls(li, message.tool_calls);
  return li;
}

function insertBySeq(li) {
  const seq = +li.dataset.seq;
  const after = [...log.children].find((other) => other.dataset.seq && +other.dataset.seq > seq);
  log.insertBefore(li, after || (turn && turn.li !== li ? turn.li : null));
}

function onMessages(messages) {
  for (const message of messages) {
    if (log.querySelector(`[data-seq="${message.seq}"]`)) continue;
    if (turn && message.run_id && message.run_id === turn.runId) {
      // The reply of the turn being streamed: the streamed text becomes the stored message.
      turn.li.dataset.seq = message.seq;
      turn.li.querySelector('[data-testid="playground-reply"]').textContent = message.content ?? "";
      setCalls(turn.li, message.tool_calls);
      continue;
    }
    insertBySeq(messageItem(message));
  }
  scrollDown();
}

function startTurn(event) {
  const li = element("li", {
    class: "role-assistant playground-turn streaming",
    "data-testid": "playground-turn",
    "data-role": "assistant",
    "data-run-id": event.run_id,
  });
  const meta = element("div", { class: "meta" });
  meta.appendChild(element("span")).appendChild(element("strong", {}, "assistant"));
  meta.appendChild(element("span", { "data-testid": "playground-tokens" }, "…"));
  meta.appendChild(element("span", { "data-testid": "playground-cost" }, "…"));
  meta.appendChild(element("span", { "data-testid": "playground-latency" }, ""));
  li.appendChild(meta);
  li.appendChild(element("div", { class: "content", "data-testid": "playground-reply" }, ""));
  log.appendChild(li);
  turn = { li, runId: event.run_id, sentAt: turn?.sentAt ?? performance.now(), firstTokenAt: null, calls: [] };
  scrollDown();
}

function ensureTurn(event) {
  if (!turn || turn.runId !== event.run_id || !turn.li) startTurn(event);
  if (turn.firstTokenAt === null) turn.firstTokenAt = performance.now();
  return turn;
}

function onDelta(delta, event) {
  const current = ensureTurn(event);
  current.li.querySelector('[data-testid="playground-reply"]').textContent += delta;
  scrollDown();
}

function onToolCallDelta(deltas, event) {
  const current = ensureTurn(event);
  for (const delta of deltas || []) {
    const call = (current.calls[delta.index || 0] ||= { function: { name: "", arguments: "" } });
    if (delta.name) call.function.name = delta.name;
    if (delta.arguments) call.function.arguments += delta.arguments;
  }
  setCalls(current.li, current.calls);
}

function endTurn(event) {
  const current = turn && turn.runId === event.run_id ? turn : (startTurn(event), turn);
  const li = current.li;
  li.classList.remove("streaming");
  const usage = event.usage || {};
  const tokens = li.querySelector('[data-testid="playground-tokens"]');
  const cost = li.querySelector('[data-testid="playground-cost"]');
  const latency = li.querySelector('[data-testid="playground-latency"]');
  if (event.type === "run.completed") {
    tokens.textContent =
      usage.prompt_tokens != null ? `${usage.prompt_tokens} in / ${usage.completion_tokens} out` : "tokens unknown";
    cost.textContent = event.cost != null ? `$${event.cost.toFixed(6)}` : "cost unknown";
    totals.prompt += usage.prompt_tokens || 0;
    totals.completion += usage.completion_tokens || 0;
    totals.cost += event.cost || 0;
    totalTokens.textContent = `${totals.prompt} in / ${totals.completion} out`;
    totalCost.textContent = `$${totals.cost.toFixed(6)}`;
    totalCost.dataset.cost = totals.cost;
    if (event.status === "cancelled") li.querySelector(".meta").appendChild(element("span", { class: "chatmodel-badge" }, "cancelled"));
  } else {
    tokens.remove();
    cost.remove();
    const error = element("div", { class: "errornote", "data-testid": "playground-error" });
    error.textContent = `${event.error}: ${event.error_log || ""}`;
    li.classList.add("failed-run");
    li.appendChild(error);
  }
  const now = performance.now();
  const first = current.firstTokenAt ? ` (first token ${Math.round(current.firstTokenAt - current.sentAt)} ms)` : "";
  latency.textContent = `${Math.round(now - current.sentAt)} ms${first}`;
  if (event.message) onMessages([event.message]);
  turn = null;
}

const chat = connect(config.sessionUuid, {
  url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${config.wsPath}`,
  messagesUrl: config.messagesUrl || undefined,
  resync: Boolean(config.messagesUrl),
  onStatus(state) {
    connected = state === "open";
    if (state === "open") setStatus(running ? "running" : "idle", running ? "Running…" : "Connected.");
    else if (state === "closed") setStatus("error", "Disconnected.");
    else setStatus("connecting", state === "reconnecting" ? "Reconnecting…" : "Connecting…");
    refreshButtons();
  },
  onMessages,
  onRunStarted(event) {
    running = true;
    startTurn(event);
    setStatus("running", "Running…");
    refreshButtons();
  },
  onDelta,
  onToolCallDelta,
  onRunCompleted(event) {
    endTurn(event);
  },
  onRunFailed(event) {
    endTurn(event);
  },
  onError(event) {
    if (!event.request_id) setStatus("error", event.message || event.code);
  },
});

async function submit() {
  const content = input.value.trim();
  if (!content || !connected || running) return;
  running = true;
  refreshButtons();
  setStatus("running", "Sending…");
  try {
    await chat.addMessages([{ role: role.value, content }]);
  } catch (error) {
    running = false;
    refreshButtons();
    setStatus("error", error.message);
    return;
  }
  input.value = "";
  role.value = "user";
  turn = { li: null, runId: null, sentAt: performance.now(), firstTokenAt: null, calls: [] };
  const final = await chat.run({ stream: true });
  running = false;
  refreshButtons();
  if (final && final.type === "error") setStatus("error", final.message || final.code);
  else if (final && final.type === "run.failed") setStatus("error", `The run failed: ${final.error}`);
  else setStatus("idle", "Connected.");
  input.focus();
}

$("playground-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
// As on the example chat page: Enter sends, Shift+Enter starts a new line (Ctrl+Enter still sends).
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
stop.addEventListener("click", () => chat.cancel().catch(() => {}));
window.chatmodelPlayground = chat; // for the console and browser tests
