// The official `openai` JS package against a live example site's /v1/ (run by tests/openai_compat/test_node_openai.py).
// Usage: BASE_URL=http://127.0.0.1:PORT TOKEN=<DRF token> OTHER_TOKEN=<another user's> node openai_client.mjs
// Prints one JSON line: what the client observed.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.BASE_URL}/v1`, apiKey: process.env.TOKEN, maxRetries: 0 });
const other = new OpenAI({ baseURL: `${process.env.BASE_URL}/v1`, apiKey: process.env.OTHER_TOKEN, maxRetries: 0 });

const out = {};
out.models = [];
for await (const model of client.models.list()) out.models.push(model.id);

const conversation = await client.conversations.create({ metadata: { model: "simple_assistant", topic: "js" } });
out.conversation = conversation.id;

const first = await client.responses.create({ model: "simple_assistant", conversation: conversation.id, input: "Tell me a story from JS" });
out.first = { id: first.id, text: first.output_text, status: first.status, usage: first.usage };

const stream = await client.responses.create({
  model: "simple_assistant",
  previous_response_id: first.id,
  input: "and again",
  stream: true,
});
out.streamTypes = [];
out.streamText = "";
let lastSeq = -1;
out.sequenceOrdered = true;
for await (const event of stream) {
  if (!out.streamTypes.includes(event.type)) out.streamTypes.push(event.type);
  if (event.sequence_number <= lastSeq) out.sequenceOrdered = false;
  lastSeq = event.sequence_number;
  if (event.type === "response.output_text.delta") out.streamText += event.delta;
}

out.items = [];
for await (const item of client.conversations.items.list(conversation.id, { order: "asc" })) {
  out.items.push([item.type, item.role, item.content?.map((c) => c.text).join("")]);
}

const completion = await client.chat.completions.create({
  model: "say_hello_bot",
  messages: [{ role: "user", content: "Hi" }],
  stream: true,
});
out.completionText = "";
for await (const chunk of completion) out.completionText += chunk.choices[0]?.delta?.content ?? "";

try {
  await other.conversations.retrieve(conversation.id);
  out.otherUser = "visible";
} catch (error) {
  out.otherUser = error instanceof OpenAI.NotFoundError ? "NotFoundError" : `${error.constructor.name} ${error.status}`;
}
try {
  await client.responses.create({ model: "simple_assistant", input: "x", instructions: "Be a pirate." });
  out.instructions = "accepted";
} catch (error) {
  out.instructions = error instanceof OpenAI.BadRequestError ? "BadRequestError" : `${error.constructor.name}`;
}
console.log(JSON.stringify(out));
