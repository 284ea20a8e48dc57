// The lmforge web chat: talks to the server's own /v1/chat/completions with streaming.
// Plain browser JavaScript with no dependencies, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];     // [{role, content}] so far, without the system prompt
let controller = null;       // AbortController of the reply being streamed
let modelId = null;

$("api-key").value = localStorage.getItem("lmforge-api-key") || "";
$("api-key").addEventListener("change", () => {
  localStorage.setItem("lmforge-api-key", $("api-key").value);
  loadModel();
});
$("temperature").addEventListener("input", () => { $("temperature-value").textContent = $("temperature").value; });

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("api-key").value) h["Authorization"] = "Bearer " + $("api-key").value;
  return h;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
    modelId = body.data[0].id;
    $("model-name").textContent = modelId + " · context " + body.data[0].max_model_len;
    showError("");
  } catch (e) {
    $("model-name").textContent = "not connected";
    showError(String(e.message || e));
  }
}

function addBubble(role, text) {
  const div = document.createElement("div");
  div.className = "message " + role;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("regenerate").disabled = busy || !conversation.some((m) => m.role === "assistant");
}

// Parse a server-sent-event stream, calling onData for each `data:` payload.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ") && line !== "data: [DONE]") onData(JSON.parse(line.slice(6)));
      }
    }
  }
}

async function reply() {
  const messages = [];
  if ($("system").value.trim()) messages.push({ role: "system", content: $("system").value.trim() });
  messages.push(...conversation);
  const bubble = addBubble("assistant", "");
  bubble.classList.add("streaming");
  controller = new AbortController();
  setBusy(true);
  showError("");
  let text = "";
  let outcome = "done";       // or "stopped" (Stop button) or "failed"
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({
        model: modelId || undefined, messages, stream: true,
        temperature: Number($("temperature").value), max_tokens: Number($("max-tokens").value),
      }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body.error ? body.error.message : r.statusText);
    }
    await readEvents(r, (chunk) => {
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        text += delta.content;
        bubble.textContent = text;
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    });
  } catch (e) {
    outcome = e.name === "AbortError" ? "stopped" : "failed";
    if (outcome === "failed") showError(String(e.message || e));
  } finally {
    bubble.classList.remove("streaming");
    controller = null;
    // a stopped reply is kept as it stands, so the conversation continues from what was shown
    if (text || outcome === "done") conversation.push({ role: "assistant", content: text });
    if (!text && outcome !== "done") bubble.remove();
    else if (!text) { bubble.textContent = "(empty reply)"; bubble.classList.add("empty"); }
    setBusy(false);
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  conversation.push({ role: "user", content: text });
  addBubble("user", text);
  reply();
});

$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});

$("stop").addEventListener("click", () => { if (controller) controller.abort(); });

$("regenerate").addEventListener("click", () => {
  if (controller || !conversation.length || conversation[conversation.length - 1].role !== "assistant") return;
  conversation.pop();
  const bubbles = $("messages").querySelectorAll(".message.assistant");
  bubbles[bubbles.length - 1].remove();
  reply();
});

$("reset").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").replaceChildren();
  setBusy(false);
});

loadModel();
