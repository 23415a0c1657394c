// The example's React chat: useChat (@ai-sdk/react) over DefaultChatTransport, against chatmodel_app's
// AI SDK UI message stream endpoint (/api/ai-sdk/<chat model>/chat). The chat id is the session uuid.
import { useEffect, useRef, useState } from 'react';
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';

export default function App({ config }) {
  // An existing chat starts from its stored messages, which must be loaded before useChat starts.
  const [initialMessages, setInitialMessages] = useState(config.resume ? null : []);
  const [loadError, setLoadError] = useState(null);

  useEffect(() => {
    if (!config.resume) return;
    fetch(`${config.api}/${config.chatId}/messages`, { credentials: 'same-origin' })
      .then((response) => (response.ok ? response.json() : Promise.reject(new Error(`HTTP ${response.status}`))))
      .then(setInitialMessages, (error) => setLoadError(`Could not load the chat: ${error.message}`));
  }, [config]);

  if (loadError) return <p className="notice error">{loadError}</p>;
  if (initialMessages === null) return <p className="muted loading">Loading the chat…</p>;
  return <Chat config={config} initialMessages={initialMessages} />;
}

function Chat({ config, initialMessages }) {
  const [transport] = useState(
    () =>
      new DefaultChatTransport({
        api: config.api,
        credentials: 'same-origin',
        // The Django session cookie authenticates; POST and DELETE also need the CSRF token.
        headers: { 'X-CSRFToken': config.csrfToken },
      }),
  );
  const { messages, sendMessage, status, stop, error } = useChat({
    id: config.chatId,
    messages: initialMessages,
    transport,
    // After a reload: GET {api}/{id}/stream replays the run in progress (text so far, then live), or is 204.
    resume: config.resume,
  });
  const [input, setInput] = useState('');
  const list = useRef(null);
  const busy = status === 'submitted' || status === 'streaming';

  // Keep the newest text in view while it streams.
  useEffect(() => {
    list.current.scrollTop = list.current.scrollHeight;
  }, [messages, error]);

  function send(event) {
    event.preventDefault();
    const text = input.trim();
    if (!text || busy) return;
    sendMessage({ text });
    setInput('');
    // The address names the chat, so a reload comes back to it (and resumes a run in progress).
    const url = new URL(window.location.href);
    url.search = new URLSearchParams({ session: config.chatId }).toString();
    window.history.replaceState(null, '', url);
  }

  async function stopRun() {
    // DELETE {api}/{id}/stream cancels the run on the server (from any page, resumed or not); its stream then
    // ends by itself, with what was stored and finish metadata {status: "cancelled"}. Aborting the fetch alone
    // (useChat's stop()) would not stop the run: that is what lets a reload resume it. So stop() only drops the
    // stream here when the server had nothing to cancel (the run has not started yet).
    const response = await fetch(`${config.api}/${config.chatId}/stream`, {
      method: 'DELETE',
      credentials: 'same-origin',
      headers: { 'X-CSRFToken': config.csrfToken },
    });
    const { cancel_requested: cancelled } = response.ok ? await response.json() : {};
    if (!cancelled) await stop();
  }

  return (
    <>
      <div className="chat-head">
        <h1>{config.chatModel}</h1>
        <span className="muted" data-testid="react-chat-id">
          chat {config.chatId}
        </span>
        <a className="button new-chat-link" href={config.newChatUrl}>
          New chat
        </a>
      </div>

      <ol className="messages" ref={list} data-testid="react-messages" aria-live="polite">
        {messages.length === 0 && <li className="empty">Say something to {config.chatModel}.</li>}
        {messages.map((message) => (
          <li
            key={message.id}
            className={`message role-${message.role}`}
            data-testid={`react-${message.role}`}
          >
            <div className="who">{message.role === 'user' ? 'you' : config.chatModel}</div>
            {message.parts.map((part, i) => <Part key={i} part={part} />)}
            {message.metadata?.status === 'cancelled' && (
              <div className="turn-meta" data-testid="react-stopped">
                <span className="badge">stopped</span>
              </div>
            )}
          </li>
        ))}
        {error && (
          <li className="notice error" data-testid="react-error">
            {errorText(error)}
          </li>
        )}
      </ol>

      <form className="composer" onSubmit={send}>
        <textarea
          rows={3}
          aria-label="Message"
          data-testid="react-input"
          placeholder="Type a message. Enter sends, Shift+Enter starts a new line."
          value={input}
          onChange={(event) => setInput(event.target.value)}
          onKeyDown={(event) => {
            if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) send(event);
          }}
        />
        <div className="composer-bar">
          <span className="status" data-testid="react-status" data-status={status} role="status">
            {status}
          </span>
          <button type="button" data-testid="react-stop" onClick={stopRun} disabled={!busy}>
            Stop
          </button>
          <button type="submit" className="primary" data-testid="react-send" disabled={busy || !input.trim()}>
            Send
          </button>
        </div>
      </form>
    </>
  );
}

// Text is rendered as text (React escapes it); a function call shows its name and arguments.
function Part({ part }) {
  if (part.type === 'text') {
    return (
      <div className="text" data-testid="react-text">
        {part.text}
      </div>
    );
  }
  if (part.type === 'dynamic-tool' || part.type.startsWith('tool-')) {
    const name = part.toolName ?? part.type.slice('tool-'.length);
    return (
      <div className="calls">
        → {name}({JSON.stringify(part.input ?? {})})
      </div>
    );
  }
  return null;
}

// A refused request throws Error(<response body>): the REST API's JSON error ({detail, code}, or a refused run's
// {error_code, error_log}); anything else is shown as it came.
function errorText(error) {
  try {
    const body = JSON.parse(error.message);
    const text = body.detail ?? body.error_log;
    const code = body.code ?? body.error_code;
    if (text) return code ? `${text} (${code})` : text;
  } catch {
    // not JSON
  }
  return error.message;
}
