// a2lc app client: the token, this browser's session, the JSON API and what the query
// and review pages share (used by app.js and review.js; loaded first, its globals are
// theirs).
"use strict";
const $ = (id) => document.getElementById(id);
const VOID = 255;

// The token comes with the URL `a2lc annotate` prints; the session id names this browser,
// which owns the annotator name it uses (nobody else can answer or undo under it).
const TOKEN = new URLSearchParams(location.search).get("token") || sessionStorage.getItem("a2lc.token") || "";
sessionStorage.setItem("a2lc.token", TOKEN);
// Out of the address bar (and so out of history, bookmarks and screen shares): the
// page keeps it for this tab; images get the cookie the app sets instead.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
// The session id is minted by the app (a made-up one is refused); this browser keeps
// it, and the app hands it back as it is while it is valid (a new one after the
// token was replaced).
let SESSION = localStorage.getItem("a2lc.session") || "";
let sessionReady = null;
function ensureSession() {
  if (!sessionReady) {
    sessionReady = (async () => {
      const response = await fetch("/api/session", {
        method: "POST",
        headers: { "X-A2LC-Token": TOKEN, "Content-Type": "application/json" },
        body: JSON.stringify({ session: SESSION }),
      });
      const data = await response.json();
      if (!response.ok) {
        sessionReady = null;
        const error = new Error(data.error || response.statusText);
        error.status = response.status;
        throw error;
      }
      SESSION = data.session;
      localStorage.setItem("a2lc.session", SESSION);
    })();
  }
  return sessionReady;
}

async function api(path, body) {
  await ensureSession();
  const headers = { "X-A2LC-Token": TOKEN, "X-A2LC-Session": SESSION };
  const options = body === undefined ? { headers } : { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) {
    const error = new Error(data.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

// The zoomed view fills its box whatever the crop's size (a tiny segment is enlarged).
function fitZoom() {
  const img = $("zoom");
  if (!img.naturalWidth) return;
  const maxWidth = Math.min(window.innerWidth * 0.56, 720), maxHeight = window.innerHeight * 0.58;
  const scale = Math.min(maxWidth / img.naturalWidth, maxHeight / img.naturalHeight);
  img.style.width = `${Math.round(img.naturalWidth * scale)}px`;
  img.style.height = `${Math.round(img.naturalHeight * scale)}px`;
}

// A class's name from the app's /api/info classes (255: void).
function classNameOf(classes, id) {
  if (id === VOID) return "void";
  const c = classes.find((k) => k.id === id);
  return c ? c.name : String(id);
}

// The server's canonical form of a name (NFKC, whitespace collapsed), so that the
// progress it reports per annotator is found under the same name here.
function canonicalName(text) {
  return text.normalize("NFKC").split(/\s+/).filter(Boolean).join(" ");
}

// One request at a time: a key pressed while an answer is in flight would land on the
// item that is about to be replaced, so it is dropped. The page shows the busy state
// (body.busy) until the next item and the progress that goes with it are on screen.
// `onError(error)` shows what went wrong.
let busy = false;
async function exclusiveWork(work, onError) {
  if (busy) return;
  busy = true;
  document.body.classList.add("busy");
  try {
    await work();
  } catch (error) {
    onError(error);
  } finally {
    busy = false;
    document.body.classList.remove("busy");
  }
}

// A closed or hidden page gives its lease back at once, so nobody waits for it to
// expire; `keepalive` lets the request outlive the page (and carries the token header).
function giveBack(path, annotator) {
  fetch(path, {
    method: "POST",
    keepalive: true,
    headers: { "X-A2LC-Token": TOKEN, "X-A2LC-Session": SESSION, "Content-Type": "application/json" },
    body: JSON.stringify({ annotator }),
  }).catch(() => {});
}

// The same name from another browser: say so on a page that works, and offer to move
// the name here with its resume code (the same person on a new machine) or to pick
// another one. `name`: the name tried; true when `error` was that refusal.
function nameTaken(error, name) {
  if (error.status !== 403 || !/in use in another browser|not the resume code/.test(error.message)) return false;
  $("task").hidden = true;
  $("done").hidden = true;
  $("login").hidden = true;
  $("taken").hidden = false;
  $("taken-message").textContent = error.message;
  $("taken-name").textContent = name;
  $("resume").focus();
  return true;
}

// The taken-name panel's two ways out: `resume(code)` continues here under the name,
// `otherName()` forgets it before the sign-in comes back.
function setupTaken(resume, otherName) {
  $("resume-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = $("resume").value.trim();
    if (!code) return;
    $("taken").hidden = true;
    $("resume").value = "";
    resume(code);
  });
  $("other-name").addEventListener("click", () => {
    $("taken").hidden = true;
    otherName();
    $("resume-code").textContent = "";
    localStorage.removeItem("a2lc.annotator");
    $("who").textContent = "";
    $("login").hidden = false;
    $("name").value = "";
    $("name").focus();
  });
}
