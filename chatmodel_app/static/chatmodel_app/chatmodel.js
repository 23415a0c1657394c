/**
 * chatmodel.js: a dependency-free ES module client for chatmodel_app's session websocket.
 *
 *   <script type="module">
 *     import { connect } from "/static/chatmodel_app/chatmodel.js";
 *     const chat = connect(sessionUuid, {
 *       onDelta: (text) => (reply.textContent += text),
 *       onRunCompleted: (event) => console.log(event.message, event.usage),
 *     });
 *     await chat.addMessages([{ role: "user", content: "Hello" }]);
 *     const final = await chat.run({ stream: true, temperature: 0.2 }); // never rejects, like run() in Python
 *     chat.cancel();
 *   </script>
 *
 * Browsers are authenticated by their Django session cookie (same origin). Every socket on a
 * session sees every run on it, wherever it was started. After a dropped connection the client
 * reconnects with exponential backoff and resynchronises `messages` from the REST messages
 * endpoint; the socket joins first and fetches second, so no message falls in between. A socket
 * that (re)connects mid-run first gets `run.snapshot` (the reply so far, `onSnapshot(text, event)`),
 * then the run's later events: no gap and no duplicate, after a reload too.
 */

export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_NOT_FOUND = 4404;

const FATAL_HTTP = { 401: "unauthenticated", 403: "forbidden", 404: "not_found" };
const FATAL_CLOSE = { [CLOSE_UNAUTHENTICATED]: "unauthenticated", [CLOSE_NOT_FOUND]: "not_found" };

/** An error event from the server (or the client itself) as an Error: `.code`, `.event`. */
export class ChatModelError extends Error {
  constructor(event) {
    super(event.message || event.code || "error");
    this.name = "ChatModelError";
    this.code = event.code;
    this.event = event;
  }
}

/** Open a socket on the session and return its client (already connecting). */
export function connect(sessionUuid, options = {}) {
  return new ChatModelSocket(sessionUuid, options).open();
}

/** The websocket URL of a session on this page's host. */
export function sessionUrl(sessionUuid, { host, secure } = {}) {
  const loc = globalThis.location || {};
  const scheme = (secure ?? loc.protocol === "https:") ? "wss" : "ws";
  return `${scheme}://${host || loc.host}/ws/chatmodel/sessions/${sessionUuid}/`;
}

export class ChatModelSocket {
  /**
   * options: url (websocket URL), apiBase (where chatmodel_app.urls is mounted, default ""),
   * messagesUrl, token (DRF token for the REST calls; the socket itself uses the cookie),
   * reconnect (true), backoff ({initial: 500, max: 15000, factor: 2}), resync (true),
   * pingInterval (ms, 25000; 0 to disable), WebSocket and fetch (to inject), and callbacks:
   * onOpen, onClose, onStatus, onEvent, onRunStarted, onDelta, onToolCallDelta, onRunCompleted,
   * onRunFailed, onMessagesAdded, onMessages, onError.
   */
  constructor(sessionUuid, options = {}) {
    this.sessionUuid = sessionUuid;
    this.options = options;
    this.url = options.url || sessionUrl(sessionUuid);
    this.messagesUrl =
      options.messagesUrl || `${options.apiBase || ""}/api/sessions/${sessionUuid}/messages/`;
    this.backoff = { initial: 500, max: 15000, factor: 2, ...(options.backoff || {}) };
    this.messages = []; // stored messages, in seq order
    this.activeRun = null; // the run in progress: {id, text, toolCalls, seq}
    this.status = "idle"; // connecting, open, reconnecting, closed
    this.ws = null;
    this._listeners = new Map();
    this._attempts = 0;
    this._everOpened = false;
    this._closedByUser = false;
    this._timer = null;
    this._pinger = null;
    this._counter = 0;
    this._requests = new Map(); // request_id -> {resolve, reject, kind}
    this._adds = []; // request_ids of add_messages waiting for their messages.added
    this._runs = []; // request_ids of runs waiting for their run.started
    this._activeRunRequest = null; // request_id of the started run of this client, if any
  }

  // --- connection ---------------------------------------------------------------------------

  open() {
    this._closedByUser = false;
    this._setStatus(this._everOpened ? "reconnecting" : "connecting");
    const WebSocketImpl = this.options.WebSocket || globalThis.WebSocket;
    const ws = new WebSocketImpl(this.url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._everOpened = true;
      this._attempts = 0;
      this._setStatus("open");
      this._call("onOpen");
      this._emit("open", {});
      this._startPinging();
      if (this.options.resync !== false) {
        this.resync().catch((error) => this._localError("resync_failed", String(error)));
      }
    };
    ws.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this._handle(event);
    };
    let ended = false;
    const onEnd = (close) => {
      if (ended || this.ws !== ws) return;
      ended = true;
      this._stopPinging();
      // A started run goes on on the server: unless this client stops here, a resync settles it later.
      const stopping = this._closedByUser || this.options.reconnect === false || FATAL_CLOSE[close.code];
      this._failPending(close, Boolean(stopping));
      this._call("onClose", close);
      this._emit("close", { code: close.code, reason: close.reason });
      if (this._closedByUser || this.options.reconnect === false) {
        this._setStatus("closed");
        return;
      }
      const fatal = FATAL_CLOSE[close.code];
      if (fatal) {
        this._fatal(fatal, close.code);
      } else if (!opened) {
        // A refused handshake looks like any network failure to a browser (code 1006): ask REST why.
        this._probe();
      } else {
        this._scheduleReconnect();
      }
    };
    ws.onclose = onEnd;
    // Some WebSocket implementations (Node's) report a refused handshake as an error and never close.
    ws.onerror = () => {
      if (!opened) onEnd({ code: 1006, reason: "handshake failed" });
    };
    return this;
  }

  close() {
    this._closedByUser = true;
    clearTimeout(this._timer);
    this._stopPinging();
    if (this.ws) this.ws.close(1000);
    this._setStatus("closed");
  }

  _scheduleReconnect() {
    const { initial, max, factor } = this.backoff;
    const delay = Math.min(max, initial * factor ** this._attempts) * (0.5 + Math.random() / 2);
    this._attempts += 1;
    this._setStatus("reconnecting");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.open(), delay);
  }

  async _probe() {
    try {
      const response = await this._fetch(this.messagesUrl + "?limit=1");
      const fatal = FATAL_HTTP[response.status];
      if (fatal) return this._fatal(fatal, response.status);
    } catch {
      // The server is unreachable: keep trying.
    }
    this._scheduleReconnect();
  }

  _fatal(code, status) {
    this._setStatus("closed");
    this._failPending({ code: status }, true);
    this._localError(code, `The server refused this session (${status}); not reconnecting.`);
  }

  _startPinging() {
    const every = this.options.pingInterval ?? 25000;
    if (every > 0) this._pinger = setInterval(() => this._send({ type: "ping" }), every);
  }

  _stopPinging() {
    clearInterval(this._pinger);
    this._pinger = null;
  }

  _setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this._call("onStatus", status);
    this._emit("status", { status });
  }

  // --- requests -----------------------------------------------------------------------------

  /**
   * Add messages to the session; resolves with the `messages.added` event, rejects with a ChatModelError.
   * While a run is active the version's double-texting policy applies; `{doubleTexting: "enqueue"}` (or
   * "interrupt", "rollback") picks another the version allows. Enqueued messages resolve with `messages.queued`.
   */
  addMessages(messages, options = {}) {
    const frame = { type: "add_messages", messages };
    if (options.doubleTexting) frame.double_texting = options.doubleTexting;
    return this._request(frame, "add");
  }

  /**
   * Run the model on the session: options are stream (default true), functions, tools and the
   * allowed sampling params (temperature, max_tokens, ...). Never rejects: resolves with the
   * run's `run.completed` or `run.failed` event, or an `error` event when it could not start.
   */
  run(options = {}) {
    return this._request({ type: "run", stream: true, ...options }, "run").catch((error) => error.event);
  }

  /**
   * Stop the session's active run. Resolves with the run's final event (`run.completed` with
   * status "cancelled" and what was generated); rejects with code "no_active_run" when none runs.
   */
  cancel() {
    return this._request({ type: "cancel" }, "cancel");
  }

  // --- branches (docs/branches.md) ---------------------------------------------------------

  /** Answer the last user message again (the old reply stays as an alternative); resolves as run() does. */
  regenerate(options = {}) {
    return this._request({ type: "regenerate", stream: true, ...options }, "run").catch((error) => error.event);
  }

  /** Replace user message `seq` with `content` on a new branch and answer it; resolves as run() does. */
  editMessage(seq, content, options = {}) {
    return this._request({ type: "edit_message", seq, content, stream: true, ...options }, "run").catch(
      (error) => error.event,
    );
  }

  /** Show alternative `index` (from 0) of message `seq`; resolves with the `session.path` event. */
  switchBranch(seq, index) {
    return this._request({ type: "switch_branch", seq, index }, "path");
  }

  /** Ask for the current path; resolves with the `session.path` event (messages, each with `alternatives`). */
  getPath() {
    return this._request({ type: "get_path" }, "path");
  }

  /** Resolves with the `pong` event. */
  ping() {
    return this._request({ type: "ping" }, "ping");
  }

  // --- feedback and named conversations (docs/conversations.md) ------------------------------

  /** Rate the assistant message `seq`: "up" or "down" (null takes it back); resolves with `feedback.updated`. */
  feedback(seq, rating, comment = "") {
    return this._request({ type: "feedback", seq, rating, comment }, "feedback");
  }

  /** Rename and/or (un)archive: `{title, archived}`; resolves with `session.updated`. */
  updateSession(fields) {
    return this._request({ type: "update_session", ...fields }, "session");
  }

  rename(title) {
    return this.updateSession({ title });
  }

  archive() {
    return this.updateSession({ archived: true });
  }

  unarchive() {
    return this.updateSession({ archived: false });
  }

  /** Delete the session (REST `DELETE /api/sessions/<uuid>/`; pass `csrfToken` in the options for cookies). */
  async deleteSession() {
    const url = this.messagesUrl.replace(/messages\/$/, "");
    const headers = { Accept: "application/json" };
    if (this.options.token) headers.Authorization = `Token ${this.options.token}`;
    if (this.options.csrfToken) headers["X-CSRFToken"] = this.options.csrfToken;
    const fetchImpl = this.options.fetch || globalThis.fetch.bind(globalThis);
    const response = await fetchImpl(url, { method: "DELETE", headers, credentials: "same-origin" });
    if (response.status !== 204) {
      const body = await response.json().catch(() => ({}));
      throw new ChatModelError({ type: "error", code: body.code || `http_${response.status}`, message: body.detail || "" });
    }
    this.close();
  }

  _settleBy(kind, matches, event) {
    for (const [requestId, request] of this._requests) {
      if (request.kind === kind && matches(request.frame)) {
        this._settle(requestId, event);
        return;
      }
    }
  }

  _request(frame, kind) {
    return new Promise((resolve, reject) => {
      const requestId = `r${++this._counter}`;
      if (!this._send({ ...frame, request_id: requestId })) {
        reject(new ChatModelError({ type: "error", code: "not_connected", message: "The socket is not open." }));
        return;
      }
      this._requests.set(requestId, { resolve, reject, kind, frame });
      if (kind === "add") this._adds.push(requestId);
      if (kind === "run") this._runs.push(requestId);
    });
  }

  _send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  _settle(requestId, event, failed = false) {
    const request = this._requests.get(requestId);
    if (!request) return;
    this._requests.delete(requestId);
    this._adds = this._adds.filter((id) => id !== requestId);
    this._runs = this._runs.filter((id) => id !== requestId);
    if (failed) request.reject(new ChatModelError(event));
    else request.resolve(event);
  }

  _failPending(close, all = false) {
    const event = { type: "error", code: "disconnected", message: `The socket closed (${close.code}).` };
    for (const [requestId] of [...this._requests]) {
      if (!all && requestId === this._activeRunRequest) continue;
      this._settle(requestId, event, true);
    }
    if (all) this._activeRunRequest = null;
  }

  // --- events in ----------------------------------------------------------------------------

  _handle(event) {
    switch (event.type) {
      case "run.started":
        this.activeRun = { id: event.run_id, text: "", toolCalls: [], seq: event.seq };
        // One run per session: the oldest of this client's waiting runs is the one that started.
        if (this._runs.length && !this._activeRunRequest) this._activeRunRequest = this._runs[0];
        this._call("onRunStarted", event);
        break;
      case "run.snapshot": {
        // Sent when this socket (re)connects mid-run, or answers resume(): the run's text so far. It
        // replaces what this client had of the run; the server sends only the events after it.
        const run = { id: event.run_id, text: event.content || "", toolCalls: [], seq: event.seq };
        this._mergeToolCalls(run, event.tool_call_deltas || []);
        this.activeRun = run;
        this._call("onSnapshot", run.text, event);
        break;
      }
      case "run.delta":
        this._track(event).text += event.delta;
        this._call("onDelta", event.delta, event);
        break;
      case "run.tool_call_delta":
        this._mergeToolCalls(this._track(event), event.deltas || []);
        this._call("onToolCallDelta", event.deltas, event);
        break;
      case "run.completed":
      case "run.failed":
        this._endRun(event);
        break;
      case "messages.added":
        this._merge(event.messages || []);
        this._settleAdd(event);
        this._call("onMessagesAdded", event.messages, event);
        break;
      case "session.path":
        // The current path replaces the messages this client had (another branch may have been shown), but
        // for those stored after the server read it (a reply may have come in while the path was on its way).
        const path = [...(event.messages || [])];
        const seqs = new Set(path.map((m) => m.seq));
        const newer = this.messages.filter((m) => event.stored_upto != null && m.seq > event.stored_upto);
        this.messages = [...path, ...newer.filter((m) => !seqs.has(m.seq))].sort((a, b) => a.seq - b.seq);
        if (event.request_id) this._settle(event.request_id, event);
        this._call("onMessages", this.messages);
        this._emit("messages", { messages: this.messages });
        break;
      case "session.path_changed":
        // A regenerate, edit or switch (from any door): fetch the new path; session.path follows.
        this._send({ type: "get_path" });
        break;
      case "feedback.updated": {
        // Published to every socket (no request_id): settles this client's oldest feedback on that message.
        const message = this.messages.find((m) => m.seq === event.message_seq);
        if (message) message.feedback = event.feedback;
        this._settleBy("feedback", (frame) => frame.seq === event.message_seq, event);
        this._call("onFeedback", event);
        break;
      }
      case "session.updated":
        // A rename or (un)archive from any door, or a generated title.
        this.session = { ...(this.session || {}), ...event };
        this._settleBy("session", () => true, event);
        this._call("onSessionUpdated", event);
        break;
      case "pong":
      case "messages.queued": // addMessages(..., {doubleTexting: "enqueue"}) while a run was active
        if (event.request_id) this._settle(event.request_id, event);
        break;
      case "error":
        if (event.request_id) this._settle(event.request_id, event, true);
        this._call("onError", event);
        break;
    }
    this._call("onEvent", event);
    this._emit(event.type, event);
    this._emit("*", event);
  }

  _settleAdd(event) {
    // messages.added carries no request_id (the pipeline publishes it to every socket): match the
    // messages this client sent, else take its oldest waiting add.
    const same = (sent, stored) =>
      Array.isArray(sent) &&
      sent.length === stored.length &&
      sent.every((m, i) => m.role === stored[i].role && (m.content ?? "") === (stored[i].content ?? ""));
    const stored = event.messages || [];
    const match = this._adds.find((id) => same(this._requests.get(id)?.frame.messages, stored));
    if (match || this._adds.length) this._settle(match || this._adds[0], event);
  }

  _track(event) {
    // A run already going when this socket (re)joined: its start was missed, follow it from here.
    if (!this.activeRun || this.activeRun.id !== event.run_id) {
      this.activeRun = { id: event.run_id, text: "", toolCalls: [], seq: event.seq - 1, partial: true };
    }
    if (event.seq !== this.activeRun.seq + 1) this.activeRun.gap = true; // the final message is authoritative
    this.activeRun.seq = event.seq;
    return this.activeRun;
  }

  _mergeToolCalls(run, deltas) {
    for (const delta of deltas) {
      const index = delta.index || 0;
      const call = (run.toolCalls[index] ||= { id: null, type: "function", function: { name: "", arguments: "" } });
      if (delta.id) call.id = delta.id;
      if (delta.name) call.function.name = delta.name;
      if (delta.arguments) call.function.arguments += delta.arguments;
    }
  }

  _endRun(event) {
    if (event.message) this._merge([event.message]);
    this.activeRun = null;
    if (event.type === "run.completed") this._call("onRunCompleted", event);
    else this._call("onRunFailed", event);
    if (this._activeRunRequest) {
      const requestId = this._activeRunRequest;
      this._activeRunRequest = null;
      this._settle(requestId, event);
    }
    for (const [requestId, request] of [...this._requests]) {
      if (request.kind === "cancel") this._settle(requestId, event);
    }
  }

  _merge(messages) {
    if (!messages.length) return;
    const bySeq = new Map(this.messages.map((m) => [m.seq, m]));
    for (const message of messages) bySeq.set(message.seq, message);
    this.messages = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
    this._call("onMessages", this.messages);
    this._emit("messages", { messages: this.messages });
  }

  // --- REST ---------------------------------------------------------------------------------

  /** Fetch the messages stored after the newest one this client has, and merge them in. */
  async resync() {
    let after = this.messages.length ? this.messages[this.messages.length - 1].seq : 0;
    for (let page = 0; page < 1000; page++) {
      const response = await this._fetch(`${this.messagesUrl}?after=${after}&order=asc`);
      if (!response.ok) {
        const fatal = FATAL_HTTP[response.status];
        if (fatal) this._localError(fatal, `Fetching the messages failed (${response.status}).`);
        throw new Error(`GET ${this.messagesUrl} answered ${response.status}`);
      }
      const body = await response.json();
      const results = Array.isArray(body) ? body : body.results || [];
      this._merge(results);
      this._resolveResyncedRun(results);
      if (!results.length || !body.has_more) break;
      after = results[results.length - 1].seq;
    }
    return this.messages;
  }

  _resolveResyncedRun(messages) {
    // This client's run finished while it was disconnected: its stored reply settles run().
    const requestId = this._activeRunRequest;
    const runId = this.activeRun && this.activeRun.id;
    const reply = messages.find((m) => m.run_id && m.run_id === runId);
    if (requestId && reply && this.ws && this.ws.readyState === 1) {
      this._endRun({ type: "run.completed", run_id: runId, message: reply, resynced: true });
    }
  }

  _fetch(url) {
    const headers = { Accept: "application/json" };
    if (this.options.token) headers.Authorization = `Token ${this.options.token}`;
    const fetchImpl = this.options.fetch || globalThis.fetch.bind(globalThis);
    return fetchImpl(url, { headers, credentials: "same-origin" });
  }

  // --- callbacks ----------------------------------------------------------------------------

  /** Ask for the active run's text so far (a `run.snapshot` event follows), or `resumed` when none is running. */
  resume() {
    return this._send({ type: "resume" });
  }

  /** Listen to an event type ("run.delta", "messages", "status", "open", "close", "*"...); returns an unsubscribe. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this._listeners.get(type).delete(listener);
  }

  _emit(type, event) {
    for (const listener of this._listeners.get(type) || []) {
      try {
        listener(event);
      } catch (error) {
        console.error(error);
      }
    }
  }

  _call(name, ...args) {
    const callback = this.options[name];
    if (typeof callback !== "function") return;
    try {
      callback(...args);
    } catch (error) {
      console.error(error);
    }
  }

  _localError(code, message) {
    const event = { type: "error", code, message, session_uuid: this.sessionUuid, run_id: null, local: true };
    this._call("onError", event);
    this._emit("error", event);
  }
}
