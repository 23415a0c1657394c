// Branches on the example chat page: "‹ 2/3 ›" switchers on messages with alternatives, Edit on user
// messages, Regenerate on the last reply. chat.js owns the page; it announces its socket ("chat:socket")
// and each render ("chat:rendered"); this module only decorates the messages and sends the branch frames
// through chatmodel.js (regenerate, editMessage, switchBranch, getPath). Text is set with textContent only.
const log = document.getElementById("chat-messages");

const page = () => window.chatPage;
const idle = () => page()?.chat?.status === "open" && !page().running && !page().busy;

function button(text, testid, title, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "branch-button";
  b.dataset.testid = testid;
  b.title = title;
  b.textContent = text;
  b.addEventListener("click", (event) => {
    event.preventDefault();
    if (idle()) onClick();
  });
  return b;
}

function showError(event) {
  if (event && event.type === "error") {
    const li = document.createElement("li");
    li.className = "notice error";
    li.dataset.testid = "chat-error";
    li.dataset.code = event.code || "error";
    li.setAttribute("role", "alert");
    li.textContent = event.message || event.code || "Something went wrong.";
    log.appendChild(li);
  }
}

async function act(promise) {
  const state = page();
  state.busy = true;
  try {
    showError(await promise);
  } catch (error) {
    showError(error.event || { type: "error", code: "error", message: String(error) });
  } finally {
    state.busy = false;
    await state.chat.getPath().catch(() => {});
    decorate();
  }
}

function switcher(message) {
  const { index, count } = message.alternatives;
  const box = document.createElement("span");
  box.className = "branch-switcher";
  box.dataset.testid = "branch-switcher";
  const prev = button("‹", "branch-prev", "Previous alternative", () =>
    act(page().chat.switchBranch(message.seq, index - 1))
  );
  const next = button("›", "branch-next", "Next alternative", () =>
    act(page().chat.switchBranch(message.seq, index + 1))
  );
  prev.disabled = index <= 0;
  next.disabled = index >= count - 1;
  const label = document.createElement("span");
  label.dataset.testid = "branch-position";
  label.textContent = `${index + 1}/${count}`;
  box.append(prev, label, next);
  return box;
}

function startEdit(li, message) {
  if (li.querySelector("textarea")) return;
  const form = document.createElement("div");
  form.className = "branch-edit";
  const area = document.createElement("textarea");
  area.dataset.testid = "edit-input";
  area.rows = 2;
  area.value = message.content ?? "";
  const save = button("Save & submit", "edit-save", "Continue the conversation from this message", () => {
    const content = area.value.trim();
    if (!content) return;
    form.remove();
    act(page().chat.editMessage(message.seq, content, { stream: true }));
  });
  const cancel = button("Cancel", "edit-cancel", "Keep the message as it is", () => form.remove());
  form.append(area, save, cancel);
  li.appendChild(form);
  area.focus();
}

function decorate() {
  const state = page();
  if (!state?.chat) return;
  const messages = state.chat.messages || [];
  const onPath = new Set(messages.map((m) => String(m.seq)));
  // What the current path no longer holds (another branch is shown now) leaves the page.
  // A failed turn stored no message: it sits at the last seq it was given plus a half, and stays while that
  // message is on the path.
  for (const li of log.querySelectorAll(":scope > li[data-seq]")) {
    const anchor = String(Math.floor(Number(li.dataset.seq)));
    if (!onPath.has(anchor) && li.dataset.state !== "streaming" && !li.dataset.pending) li.remove();
  }
  const lastAssistant = [...messages].reverse().find((m) => m.role === "assistant");
  for (const message of messages) {
    const li = log.querySelector(`:scope > li[data-seq="${message.seq}"]`);
    if (!li) continue;
    li.querySelector(":scope > .branch-tools")?.remove();
    const tools = document.createElement("div");
    tools.className = "branch-tools";
    if (message.alternatives && message.alternatives.count > 1) tools.appendChild(switcher(message));
    if (message.role === "user") {
      tools.appendChild(button("Edit", "edit-message", "Edit and continue from here", () => startEdit(li, message)));
    }
    if (message === lastAssistant && message.seq === messages.at(-1).seq) {
      tools.appendChild(
        button("Regenerate", "regenerate", "Answer again (the old reply stays as an alternative)", () =>
          act(page().chat.regenerate({ stream: true }))
        )
      );
    }
    if (tools.childElementCount) li.appendChild(tools);
  }
}

function watch(chat) {
  // A reply written on another tab or door: its alternatives come with the path.
  chat.on("run.completed", () => chat.getPath().catch(() => {}));
  chat.on("session.path", () => decorate());
  chat.on("open", () => chat.getPath().catch(() => {}));
}

document.addEventListener("chat:socket", (event) => watch(event.detail));
document.addEventListener("chat:rendered", () => decorate());
if (page()?.chat) watch(page().chat);
