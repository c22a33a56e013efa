// a2lc review queue: one automatic change at a time, accept or revert by key (client.js:
// token, session, api). The changes come in a fixed random order, so what reviewers find
// is a fair sample of what the correctors did.
"use strict";
const state = { name: localStorage.getItem("a2lc.annotator") || "", info: null, change: null };

function className(id) {
  return classNameOf(state.info.classes, id);
}

function chip(element, id) {
  const c = state.info.classes.find((k) => k.id === id);
  element.textContent = className(id);
  element.style.borderColor = c ? `rgb(${c.color.join(",")})` : "#888";
}

function showProgress(p) {
  const mine = p.by_annotator[state.name] || 0;
  $("progress").textContent = `${p.reviewed} reviewed · ${p.left} left · you: ${mine}`;
  const others = Object.entries(p.by_annotator).filter(([name]) => name !== state.name);
  $("team").textContent = others.map(([name, n]) => `${name}: ${n}`).join(" · ");
  $("done-counts").textContent = `${p.reviewed} reviewed; ${p.leased} being reviewed by others.`;
}

function viewUrl(change, zoom) {
  return `/api/view/${encodeURIComponent(change.image_id)}/${change.segment_id}.png?zoom=${zoom ? 1 : 0}`;
}

function showChange(change) {
  state.change = change;
  $("task").hidden = !change;
  $("done").hidden = !!change;
  if (!change) return;
  chip($("before"), change.before);
  chip($("after"), change.after);
  const confidence = change.confidence === null ? "" : ` · confidence ${change.confidence.toFixed(3)}`;
  $("about").textContent = `round ${change.round} · ${change.corrector} corrector${confidence} · ${change.image_id}/${change.segment_id}`;
  $("guarantee").textContent = `Its guarantee: ${change.guarantee}`;
  $("zoom").src = viewUrl(change, true);
  $("zoom").dataset.change = String(change.change_id);
  $("whole").src = viewUrl(change, false);
}

async function next(extra = {}) {
  const data = await api("/api/review/lease", { annotator: state.name, ...extra });
  if (data.resume_code) $("resume-code").textContent = `resume code ${data.resume_code}`;
  showProgress(data.progress);
  showChange(data.change);
  if (data.change) await $("zoom").decode().catch(() => {});
}

function exclusive(work) {
  return exclusiveWork(work, (error) => {
    if (!nameTaken(error, state.name)) $("message").textContent = error.message;
  });
}

function judge(verdict) {
  if (!state.change) return;
  const c = state.change;
  return exclusive(async () => {
    try {
      await api("/api/review/verdict", { annotator: state.name, change_id: c.change_id, verdict });
      $("message").textContent = `${c.image_id}/${c.segment_id}: ${verdict === "accept" ? "accepted " + className(c.after) : "reverted to " + className(c.before)}`;
    } catch (error) {
      $("message").textContent = error.message;
    }
    await next();
  });
}

function undo() {
  return exclusive(async () => {
    const data = await api("/api/review/undo", { annotator: state.name });
    showProgress(data.progress);
    if (data.change) {
      showChange(data.change);
      $("message").textContent = "undone";
      await $("zoom").decode().catch(() => {});
    } else $("message").textContent = "nothing to undo";
  });
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (!state.change && key === "r") exclusive(next);
  else if (key === "a" || key === "enter") judge("accept");
  else if (key === "r" || key === "x") judge("revert");
  else if (key === "u" || key === "backspace") undo();
  else return;
  event.preventDefault();
}

function releaseLease() {
  if (!state.name || !state.change) return;
  state.change = null;
  giveBack("/api/review/release", state.name);
}

async function start() {
  state.info = await api("/api/info");
  document.addEventListener("keydown", onKey);
  $("accept").addEventListener("click", () => judge("accept"));
  $("revert").addEventListener("click", () => judge("revert"));
  $("undo").addEventListener("click", undo);
  $("refresh").addEventListener("click", () => exclusive(next));
  $("zoom").addEventListener("load", fitZoom);
  window.addEventListener("resize", fitZoom);
  window.addEventListener("pagehide", releaseLease);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") releaseLease();
    else if (state.name) exclusive(next);
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.name = canonicalName($("name").value);
    if (!state.name) return;
    localStorage.setItem("a2lc.annotator", state.name);
    $("name").blur();
    $("login").hidden = true;
    begin();
  });
  setupTaken((code) => begin({ resume: code }), () => { state.name = ""; });
  if (state.name) begin();
  else { $("login").hidden = false; $("name").focus(); }
}

function begin(extra = {}) {
  $("who").textContent = state.name;
  exclusive(() => next(extra));
}

start().catch((error) => { document.body.textContent = `a2lc: ${error.message}`; });
