// rbuild-server's page: the builds list at `/`, one build at `/builds/ID` with its log
// following live. The token (when the server wants one) is asked once and kept in
// sessionStorage.
"use strict";

const KEY = "rbuild-token";
const $ = (id) => document.getElementById(id);

function headers() {
  const t = sessionStorage.getItem(KEY);
  return t ? { Authorization: "Bearer " + t } : {};
}

async function api(path, init) {
  const res = await fetch(path, Object.assign({ headers: headers() }, init || {}));
  if (res.status === 401) {
    sessionStorage.removeItem(KEY);
    showLogin();
    throw new Error("unauthorized");
  }
  return res;
}

function showLogin() {
  $("login").hidden = false;
  $("list").hidden = true;
  $("build").hidden = true;
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value == null ? "" : String(value);
  if (cls) el.className = cls;
  return el;
}

function secs(s) {
  return s == null ? "" : s.toFixed(1) + " s";
}

async function showList() {
  $("list").hidden = false;
  const res = await api("/v1/builds?limit=100");
  const page = await res.json();
  const body = $("builds");
  body.replaceChildren();
  for (const b of page.builds) {
    const tr = document.createElement("tr");
    tr.dataset.id = b.id;
    const link = document.createElement("a");
    link.href = "/builds/" + b.id;
    link.textContent = b.id;
    const first = document.createElement("td");
    first.append(link);
    tr.append(first);
    const state = document.createElement("td");
    state.append(text("span", b.state, "state " + b.state));
    tr.append(state);
    tr.append(text("td", b.tenant), text("td", b.tags.join(" ")),
      text("td", secs(b.queued_seconds)), text("td", secs(b.duration_seconds)),
      text("td", b.step_count == null ? "" : b.cached_count + "/" + b.step_count), text("td", b.created));
    body.append(tr);
  }
  $("empty").hidden = page.builds.length > 0;
  setTimeout(() => showList().catch(() => {}), 2000);
}

function setState(state) {
  const el = $("build-state");
  el.textContent = state;
  el.className = "state " + state;
  $("cancel").hidden = !(state === "queued" || state === "running");
}

const steps = new Map();

function onEvent(e) {
  const log = $("log");
  switch (e.type) {
    case "step": {
      const tr = document.createElement("tr");
      tr.append(text("td", e.number), text("td", e.stage), text("td", e.instruction),
        text("td", ""), text("td", ""));
      steps.set(e.number, tr);
      $("steps").append(tr);
      log.append("#" + e.number + " " + e.instruction + "\n");
      setState("running");
      break;
    }
    case "miss": {
      const tr = steps.get(e.number);
      if (tr) { tr.children[3].textContent = e.reason; tr.children[3].className = "miss"; }
      break;
    }
    case "step_done": {
      const tr = steps.get(e.number);
      if (tr) {
        if (e.cached) { tr.children[3].textContent = "CACHED"; tr.children[3].className = "cached"; }
        tr.children[4].textContent = e.millis + " ms";
      }
      break;
    }
    case "log":
      log.append(e.line + "\n");
      log.scrollTop = log.scrollHeight;
      break;
    case "result":
      $("result").textContent = "Image " + e.image_id + " (" + e.cached + " of " + e.steps + " steps cached)";
      break;
    case "error":
      $("result").textContent = "Error: " + e.error + (e.location ? " (Dockerfile line " + e.location.line + ")" : "");
      break;
  }
}

// Server-sent events read with fetch (EventSource cannot send the token).
async function follow(id) {
  const res = await api("/v1/builds/" + id + "/events");
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
  const b = await (await api("/v1/builds/" + id)).json();
  setState(b.state);
}

async function showBuild(id) {
  $("build").hidden = false;
  $("build-id").textContent = id;
  const res = await api("/v1/builds/" + id);
  if (!res.ok) {
    $("build-meta").textContent = (await res.json()).error;
    return;
  }
  const b = await res.json();
  setState(b.state);
  $("build-meta").textContent = "Tenant " + b.tenant + " · tags " + (b.tags.join(" ") || "none") + " · posted " + b.created;
  $("cancel").onclick = async () => {
    await api("/v1/builds/" + id, { method: "DELETE" });
  };
  await follow(id);
}

function start() {
  const m = location.pathname.match(/^\/builds\/([0-9a-f]+)$/);
  const run = m ? () => showBuild(m[1]) : () => showList();
  $("login").onsubmit = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value);
    $("login").hidden = true;
    run().catch(() => {});
  };
  run().catch(() => {});
}

document.addEventListener("DOMContentLoaded", start);
