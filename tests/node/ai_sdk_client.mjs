// The AI SDK's own client (`DefaultChatTransport` of the `ai` package) against a live server of the example project.
// Run by tests/ai_sdk/test_node_client.py: `node ai_sdk_client.mjs <scenario>` with BASE_URL, TOKEN and CHAT_MODEL
// in the environment; prints one JSON object (what the client observed) on its last line of stdout.
import { DefaultChatTransport, readUIMessageStream } from "ai";

const BASE_URL = process.env.BASE_URL;
const TOKEN = process.env.TOKEN;
const CHAT_MODEL = process.env.CHAT_MODEL || "simple_assistant";
const api = `${BASE_URL}/api/ai-sdk/${CHAT_MODEL}/chat`;
const headers = { Authorization: `Token ${TOKEN}` };

const transport = new DefaultChatTransport({ api, headers });

function userMessage(id, text) {
  return { id, role: "user", parts: [{ type: "text", text }] };
}

function textOf(message) {
  return (message?.parts ?? [])
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");
}

// Reads a chunk stream to its end: the chunks' types, and the UI message they build (readUIMessageStream).
// `until(chunks)` may stop reading early (then the fetch is aborted through `abort`).
async function consume(stream, { until, abort, message: start } = {}) {
  const chunks = [];
  const watched = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  let message;
  try {
    for await (const m of readUIMessageStream({ stream: watched, message: start })) {
      message = m;
      if (until && until(chunks, message)) {
        abort?.();
        break;
      }
    }
  } catch (error) {
    if (error?.name !== "AbortError") throw error;
  }
  return { chunks, message };
}

async function send(chatId, messages, options = {}) {
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger: options.trigger ?? "submit-message",
    messageId: options.messageId,
    abortSignal: options.abortSignal,
    body: options.body,
  });
  return stream;
}

function summary({ chunks, message }) {
  return { types: chunks.map((c) => c.type), chunks, message, text: textOf(message) };
}

const scenarios = {
  // Two turns, the client sending its whole history each time; then a regenerate of the last reply.
  async send_and_regenerate() {
    const chatId = `chat-${Date.now()}`;
    const u1 = userMessage("u-1", "hello there");
    const first = summary(await consume(await send(chatId, [u1])));
    const u2 = userMessage("u-2", "Please repeat: blue green red");
    const history = [u1, first.message, u2];
    const second = summary(await consume(await send(chatId, history)));
    // regenerate: the client drops the reply it regenerates and sends the history before it.
    const regenerated = summary(
      await consume(
        await send(chatId, [u1, first.message, u2], { trigger: "regenerate-message", messageId: second.message.id }),
      ),
    );
    const nothing = await transport.reconnectToStream({ chatId });
    return { chatId, first, second, regenerated, reconnectAfterEnd: nothing === null };
  },

  // A tool the client offers in the body: the model calls it; the call arrives as tool-input-* parts. The client
  // runs the tool and sends the reply back with its output (addToolOutput); the answer continues that reply.
  async tool_call() {
    const chatId = `chat-tool-${Date.now()}`;
    const tools = [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "The weather in a place.",
          parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
        },
      },
    ];
    const question = userMessage("u-1", "What is the weather in Paris?");
    const result = summary(await consume(await send(chatId, [question], { body: { tools } })));
    const reply = structuredClone(result.message);
    const call = reply.parts.find((p) => p.type === "tool-get_weather");
    Object.assign(call, { state: "output-available", output: "sunny" });
    const answer = summary(
      await consume(await send(chatId, [question, reply], { body: { tools } }), { message: structuredClone(reply) }),
    );
    return { chatId, ...result, answer };
  },

  // The page goes away mid-run (its fetch is aborted); a new page resumes the run and reads it to its end.
  async resume() {
    const chatId = `chat-resume-${Date.now()}`;
    const controller = new AbortController();
    const words = Array.from({ length: Number(process.env.WORDS || 150) }, (_, i) => `word${i}`).join(" ");
    const live = summary(
      await consume(await send(chatId, [userMessage("u-1", words)], { abortSignal: controller.signal }), {
        until: (chunks) => chunks.filter((c) => c.type === "text-delta").length >= 5,
        abort: () => controller.abort(),
      }),
    );
    const stream = await transport.reconnectToStream({ chatId });
    if (stream === null) return { chatId, live, resumed: null };
    const resumed = summary(await consume(stream));
    const after = await transport.reconnectToStream({ chatId });
    return { chatId, words, live, resumed, reconnectAfterEnd: after === null };
  },

  // Stop on a resumed stream: the first page's fetch is aborted (a reload), the second page resumes, then stops
  // (aborting its fetch and asking the server to cancel with DELETE {api}/{id}/stream).
  async stop() {
    const chatId = `chat-stop-${Date.now()}`;
    const words = Array.from({ length: Number(process.env.WORDS || 300) }, (_, i) => `word${i}`).join(" ");
    const first = new AbortController();
    await consume(await send(chatId, [userMessage("u-1", words)], { abortSignal: first.signal }), {
      until: (chunks) => chunks.filter((c) => c.type === "text-delta").length >= 3,
      abort: () => first.abort(),
    });
    const resumedStream = await transport.reconnectToStream({ chatId });
    if (resumedStream === null) return { chatId, resumed: null };
    let stopResponse = null;
    const resumed = summary(
      await consume(resumedStream, {
        until: (chunks) => {
          if (stopResponse === null && chunks.filter((c) => c.type === "text-delta").length >= 5) {
            stopResponse = fetch(`${api}/${encodeURIComponent(chatId)}/stream`, { method: "DELETE", headers }).then(
              (r) => r.json(),
            );
          }
          return false; // read on: the server ends the stream once the run has stopped
        },
      }),
    );
    const stopped = await stopResponse;
    const after = await transport.reconnectToStream({ chatId });
    return { chatId, words, resumed, stopped, reconnectAfterStop: after === null };
  },

  // Errors reach the client as the transport reports them: a refused request, and a run that fails.
  async errors() {
    const out = {};
    try {
      await transport.sendMessages({
        chatId: "chat-bad",
        messages: [{ id: "s-1", role: "system", parts: [{ type: "text", text: "You are a pirate." }] }],
        trigger: "submit-message",
      });
      out.refused = null;
    } catch (error) {
      out.refused = String(error.message);
    }
    const unauthenticated = new DefaultChatTransport({ api });
    try {
      await unauthenticated.sendMessages({
        chatId: "chat-anon",
        messages: [userMessage("u-1", "hi")],
        trigger: "submit-message",
      });
      out.unauthenticated = null;
    } catch (error) {
      out.unauthenticated = String(error.message);
    }
    return out;
  },
};

const name = process.argv[2];
if (!scenarios[name]) {
  console.error(`unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const result = await scenarios[name]();
console.log(JSON.stringify(result));
