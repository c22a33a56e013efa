// a2lc app client: the token, this browser's session and the JSON API (used by app.js and
// review.js; loaded first, its globals are theirs).
"use strict";
const $ = (id) => document.getElementById(id);

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
