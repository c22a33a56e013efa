// a2lc annotation app: one query at a time, keyboard first.
"use strict";
const VOID = 255;
const state = { name: localStorage.getItem("a2lc.annotator") || "", info: null, query: null, zoom: true, busy: false };
const $ = (id) => document.getElementById(id);
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

// The token comes with the URL `a2lc annotate` prints; the session id names this browser,
// which owns the annotator name it uses (nobody else can answer or undo under it).
const TOKEN = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("a2lc.token") || "";
sessionStorage.setItem("a2lc.token", TOKEN);
const SESSION = localStorage.getItem("a2lc.session") || (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + String(Date.now()));
localStorage.setItem("a2lc.session", SESSION);

async function api(path, body) {
  const headers = { "X-A2LC-Token": TOKEN, "X-A2LC-Session": SESSION };
  const options = body === undefined ? { headers } : { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function className(id) {
  if (id === VOID) return "void";
  const c = state.info.classes.find((k) => k.id === id);
  return c ? c.name : String(id);
}

function showProgress(p) {
  const mine = p.by_annotator[state.name] || 0;
  $("progress").textContent = `${p.answered} / ${p.total} answered · you: ${mine}`;
  const others = Object.entries(p.by_annotator).filter(([name]) => name !== state.name);
  $("team").textContent = others.map(([name, n]) => `${name}: ${n}`).join(" · ");
}

function showQuery(query) {
  state.query = query;
  $("task").hidden = !query;
  $("done").hidden = !!query;
  if (!query) return;
  $("current").textContent = className(query.label);
  $("zoom").src = `/api/view/${encodeURIComponent(query.image_id)}/${query.segment_id}.png?zoom=${state.zoom ? 1 : 0}&token=${encodeURIComponent(TOKEN)}`;
  $("zoom").dataset.segment = `${query.image_id}/${query.segment_id}`;
  $("whole").src = `/api/view/${encodeURIComponent(query.image_id)}/${query.segment_id}.png?zoom=0&token=${encodeURIComponent(TOKEN)}`;
  for (const li of $("palette").children) li.classList.toggle("current", Number(li.dataset.id) === query.label);
}

async function next() {
  const data = await api("/api/lease", { annotator: state.name });
  showProgress(data.progress);
  showQuery(data.query);
  // Ready once the segment is on screen; a broken image still leaves the page usable.
  if (data.query) await $("zoom").decode().catch(() => {});
}

// One request at a time: a key pressed while an answer is in flight would land on the
// segment that is about to be replaced, so it is dropped. The page shows the busy state
// (body.busy) until the next segment and the progress that goes with it are on screen.
async function exclusive(work) {
  if (state.busy) return;
  state.busy = true;
  document.body.classList.add("busy");
  try {
    await work();
  } catch (error) {
    $("message").textContent = error.message;
  } finally {
    state.busy = false;
    document.body.classList.remove("busy");
  }
}

function submit(label) {
  if (!state.query) return;
  const q = state.query;
  return exclusive(async () => {
    try {
      await api("/api/answer", { annotator: state.name, image_id: q.image_id, segment_id: q.segment_id, label });
      $("message").textContent = `${q.image_id}/${q.segment_id}: ${label === null ? "kept " + className(q.label) : className(label)}`;
    } catch (error) {
      $("message").textContent = error.message;
    }
    await next();
  });
}

function undo() {
  return exclusive(async () => {
    const data = await api("/api/undo", { annotator: state.name });
    showProgress(data.progress);
    if (data.query) {
      showQuery(data.query);
      $("message").textContent = "undone";
      await $("zoom").decode().catch(() => {});
    }
    else $("message").textContent = "nothing to undo";
  });
}

function refresh() {
  return exclusive(next);
}

function buildPalette() {
  const list = $("palette");
  list.innerHTML = "";
  state.info.classes.forEach((c, i) => {
    const li = document.createElement("li");
    li.dataset.id = c.id;
    li.innerHTML = `<kbd>${i < KEYS.length ? KEYS[i] : ""}</kbd><span class="swatch"></span><span></span>`;
    li.querySelector(".swatch").style.background = `rgb(${c.color.join(",")})`;
    li.lastChild.textContent = c.name;
    li.addEventListener("click", () => submit(c.id));
    list.appendChild(li);
  });
}

function onKey(event) {
  if (!state.name || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  const index = KEYS.indexOf(event.key);
  if (key === "enter" || key === " ") submit(null);
  else if (index >= 0 && index < state.info.classes.length) submit(state.info.classes[index].id);
  else if (key === "x") submit(VOID);
  else if (key === "u" || key === "backspace") undo();
  else if (key === "z") { state.zoom = !state.zoom; showQuery(state.query); }
  else if (key === "r") refresh();
  else return;
  event.preventDefault();
}

async function start() {
  state.info = await api("/api/info");
  $("round").textContent = state.info.round ? `round ${state.info.round}` : "no open round";
  buildPalette();
  document.addEventListener("keydown", onKey);
  $("confirm").addEventListener("click", () => submit(null));
  $("void").addEventListener("click", () => submit(VOID));
  $("undo").addEventListener("click", undo);
  $("refresh").addEventListener("click", refresh);
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.name = $("name").value.trim();
    if (!state.name) return;
    localStorage.setItem("a2lc.annotator", state.name);
    $("name").blur();
    $("login").hidden = true;
    begin();
  });
  if (state.name) begin();
  else { $("login").hidden = false; $("name").focus(); }
}

function begin() {
  $("who").textContent = state.name;
  exclusive(async () => {
    try {
      await next();
    } catch (error) {
      $("task").hidden = false; // the message is shown inside the task panel
      throw error;
    }
  });
}

start().catch((error) => { document.body.textContent = `a2lc: ${error.message}`; });
