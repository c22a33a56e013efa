// a2lc annotation app: one query at a time, keyboard first (client.js: token, session, api).
"use strict";
const state = { name: localStorage.getItem("a2lc.annotator") || "", info: null, query: null, zoom: true, progress: null };
// How the segment is shown: brightness and contrast as CSS filters (instant, per browser),
// automatic exposure on the server (a stretch of dark frames). Remembered across reloads.
const VIEW_STEP = 0.1, VIEW_MIN = 0.3, VIEW_MAX = 3;
const view = Object.assign({ brightness: 1, contrast: 1, exposure: "auto" }, JSON.parse(localStorage.getItem("a2lc.view") || "{}"));
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

function className(id) {
  return classNameOf(state.info.classes, id);
}

function showProgress(p) {
  state.progress = p;
  const mine = p.by_annotator[state.name] || 0;
  $("progress").textContent = `${p.answered} / ${p.total} answered · you: ${mine}`;
  const others = Object.entries(p.by_annotator).filter(([name]) => name !== state.name);
  $("team").textContent = others.map(([name, n]) => `${name}: ${n}`).join(" · ");
  const open = p.total - p.answered;
  $("done-counts").textContent = `${p.answered} of ${p.total} answered; ${p.leased} still leased to other annotators` +
    (p.leased ? ` (each comes back to the pool if it is not answered within ${Math.round(state.info.lease_seconds)} s)` : "") +
    (open > p.leased ? `; ${open - p.leased} free` : "") + ".";
}

function viewUrl(query, zoom) {
  return `/api/view/${encodeURIComponent(query.image_id)}/${query.segment_id}.png?zoom=${zoom ? 1 : 0}&exposure=${view.exposure}`;
}

function applyView() {
  const filter = `brightness(${view.brightness.toFixed(2)}) contrast(${view.contrast.toFixed(2)})`;
  for (const id of ["zoom", "whole"]) $(id).style.filter = filter;
  $("exposure").setAttribute("aria-pressed", String(view.exposure === "auto"));
  $("view-state").textContent = `brightness ${Math.round(view.brightness * 100)}% · contrast ${Math.round(view.contrast * 100)}%`;
  localStorage.setItem("a2lc.view", JSON.stringify(view));
}

function adjust(name, steps) {
  view[name] = Math.min(VIEW_MAX, Math.max(VIEW_MIN, Math.round((view[name] + steps * VIEW_STEP) * 100) / 100));
  applyView();
}

function toggleExposure() {
  view.exposure = view.exposure === "auto" ? "off" : "auto";
  applyView();
  if (state.query) showQuery(state.query);
}

function resetView() {
  view.brightness = 1;
  view.contrast = 1;
  applyView();
}

function showQuery(query) {
  if (paint.on) stopPainting();
  state.query = query;
  $("task").hidden = !query;
  $("done").hidden = !!query;
  if (!query) return;
  $("current").textContent = className(query.label);
  $("zoom").src = viewUrl(query, state.zoom);
  $("zoom").dataset.segment = `${query.image_id}/${query.segment_id}`;
  $("whole").src = viewUrl(query, false);
  for (const li of $("palette").children) li.classList.toggle("current", Number(li.dataset.id) === query.label);
}

function releaseLease() {
  if (!state.name || !state.query) return;
  state.query = null;
  giveBack("/api/release", state.name);
}

function onVisibility() {
  if (document.visibilityState === "hidden") releaseLease();
  else if (state.name && state.info) refresh();
}

async function next(extra = {}) {
  const data = await api("/api/lease", { annotator: state.name, ...extra });
  // Only the browser that owns the name is shown its resume code: typed in another
  // browser, it moves the name there (the same person on another machine).
  if (data.resume_code) $("resume-code").textContent = `resume code ${data.resume_code}`;
  showProgress(data.progress);
  showQuery(data.query);
  // Ready once the segment is on screen; a broken image still leaves the page usable.
  if (data.query) await $("zoom").decode().catch(() => {});
}

function exclusive(work) {
  return exclusiveWork(work, (error) => {
    if (!nameTaken(error, state.name)) $("message").textContent = error.message;
  });
}

function submit(label) {
  if (!state.query) return;
  if (paint.on) {  // while painting, a class picks the brush
    if (label !== null) setBrushClass(label);
    return;
  }
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
    li.dataset.name = c.name.toLowerCase();
    li.innerHTML = `<kbd>${i < KEYS.length ? KEYS[i] : ""}</kbd><span class="swatch"></span><span></span>`;
    li.querySelector(".swatch").style.background = `rgb(${c.color.join(",")})`;
    li.lastChild.textContent = c.name;
    li.addEventListener("click", () => submit(c.id));
    list.appendChild(li);
  });
}

// Type-to-pick: "/" opens a filter over the palette (any number of classes); Enter
// answers with the first class that matches, Escape closes it.
function matches() {
  return [...$("palette").children].filter((li) => !li.classList.contains("filtered"));
}

function filterPalette() {
  const text = $("pick").value.trim().toLowerCase();
  for (const li of $("palette").children) {
    const name = li.dataset.name;
    li.classList.toggle("filtered", text !== "" && !name.includes(text));
  }
  // Names that start with the text first: "car" picks car before "sidecar".
  const first = matches().sort((a, b) => Number(!a.dataset.name.startsWith(text)) - Number(!b.dataset.name.startsWith(text)))[0];
  for (const li of $("palette").children) li.classList.toggle("picked", li === first && text !== "");
  return first;
}

function openPick() {
  $("pick").hidden = false;
  $("pick").value = "";
  filterPalette();
  $("pick").focus();
}

function closePick() {
  $("pick").value = "";
  filterPalette();
  $("pick").hidden = true;
  $("pick").blur();
}

function onPickKey(event) {
  if (event.key === "Escape") { closePick(); event.preventDefault(); }
  else if (event.key === "Enter") {
    event.preventDefault();
    const first = $("pick").value.trim() ? filterPalette() : null;
    if (!first) return;
    closePick();
    submit(Number(first.dataset.id));
  }
}

function onKey(event) {
  if (!state.name || event.target.tagName === "INPUT") return;
  if (paint.on && onPaintKey(event)) { event.preventDefault(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  const index = KEYS.indexOf(event.key);
  if (key === "enter" || key === " ") submit(null);
  else if (index >= 0 && index < state.info.classes.length) submit(state.info.classes[index].id);
  else if (key === "/") openPick();
  else if (key === "x") submit(VOID);
  else if (key === "u" || key === "backspace") undo();
  else if (key === "z") { state.zoom = !state.zoom; showQuery(state.query); }
  else if (key === "p") startPainting();
  else if (key === "r") refresh();
  else if (event.key === "]") adjust("brightness", 1);
  else if (event.key === "[") adjust("brightness", -1);
  else if (event.key === "'") adjust("contrast", 1);
  else if (event.key === ";") adjust("contrast", -1);
  else if (key === "e") toggleExposure();
  else if (key === "v") resetView();
  else return;
  event.preventDefault();
}

async function start() {
  state.info = await api("/api/info");
  $("round").textContent = state.info.round ? `round ${state.info.round}` : "no open round";
  buildPalette();
  applyView();
  document.addEventListener("keydown", onKey);
  document.addEventListener("visibilitychange", onVisibility);
  window.addEventListener("pagehide", releaseLease);
  $("pick").addEventListener("input", filterPalette);
  $("pick").addEventListener("keydown", onPickKey);
  $("brighter").addEventListener("click", () => adjust("brightness", 1));
  $("darker").addEventListener("click", () => adjust("brightness", -1));
  $("more-contrast").addEventListener("click", () => adjust("contrast", 1));
  $("less-contrast").addEventListener("click", () => adjust("contrast", -1));
  $("exposure").addEventListener("click", toggleExposure);
  $("reset-view").addEventListener("click", resetView);
  $("confirm").addEventListener("click", () => submit(null));
  $("void").addEventListener("click", () => submit(VOID));
  $("undo").addEventListener("click", undo);
  $("refresh").addEventListener("click", refresh);
  setupTaken((code) => begin({ resume: code }), () => { state.name = ""; });
  $("zoom").addEventListener("load", fitZoom);
  window.addEventListener("resize", fitZoom);
  setupPainting();
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.name = canonicalName($("name").value);
    if (!state.name) return;
    localStorage.setItem("a2lc.annotator", state.name);
    $("name").blur();
    $("login").hidden = true;
    begin();
  });
  if (state.name) begin();
  else { $("login").hidden = false; $("name").focus(); }
}

function begin(extra = {}) {
  $("who").textContent = state.name;
  exclusive(async () => {
    try {
      await next(extra);
    } catch (error) {
      if (!nameTaken(error, state.name)) $("task").hidden = false; // the message is shown inside the task panel
      throw error;
    }
  });
}


// Painting: split a mixed segment. The page keeps a class map the size of the zoomed
// view (0: not painted, class + 1, 255: void), draws it over the view, and sends it as
// a PNG (red channel) with the answer; the server applies it inside the segment only.
const paint = { on: false, tool: "brush", size: 8, cls: 0, map: null, width: 0, height: 0, strokes: [], last: null };

function setupPainting() {
  const canvas = $("paint");
  canvas.addEventListener("pointerdown", (event) => {
    if (!paint.on) return;
    canvas.setPointerCapture(event.pointerId);
    paint.strokes.push(paint.map.slice());
    paint.last = null;
    dab(event);
  });
  canvas.addEventListener("pointermove", (event) => { if (paint.on && event.buttons) dab(event); });
  canvas.addEventListener("pointerup", () => { paint.last = null; showPaintState(); });
  $("paint-mode").addEventListener("click", startPainting);
  $("brush").addEventListener("click", () => setTool("brush"));
  $("eraser").addEventListener("click", () => setTool("eraser"));
  $("smaller").addEventListener("click", () => resize(-1));
  $("bigger").addEventListener("click", () => resize(1));
  $("send-paint").addEventListener("click", sendPainting);
  $("cancel-paint").addEventListener("click", stopPainting);
}

function startPainting() {
  if (!state.query || paint.on) return;
  if (!state.zoom) { state.zoom = true; showQuery(state.query); }
  const img = $("zoom");
  if (!img.naturalWidth) return;
  paint.on = true;
  paint.width = img.naturalWidth;
  paint.height = img.naturalHeight;
  paint.map = new Uint8Array(paint.width * paint.height);
  paint.strokes = [];
  paint.size = Math.max(2, Math.round(Math.min(paint.width, paint.height) / 24));
  const current = state.query.label;
  setBrushClass(state.info.classes.some((c) => c.id === current) ? state.info.classes.find((c) => c.id !== current).id : state.info.classes[0].id);
  const canvas = $("paint");
  canvas.width = paint.width;
  canvas.height = paint.height;
  canvas.hidden = false;
  $("paint-tools").hidden = false;
  $("paint-mode").setAttribute("aria-pressed", "true");
  setTool("brush");
  render();
}

function stopPainting() {
  paint.on = false;
  paint.map = null;
  $("paint").hidden = true;
  $("paint-tools").hidden = true;
  $("paint-mode").setAttribute("aria-pressed", "false");
}

function setTool(tool) {
  paint.tool = tool;
  $("brush").setAttribute("aria-pressed", String(tool === "brush"));
  $("eraser").setAttribute("aria-pressed", String(tool === "eraser"));
  showPaintState();
}

function setBrushClass(id) {
  paint.cls = id;
  for (const li of $("palette").children) li.classList.toggle("picked", Number(li.dataset.id) === id);
  showPaintState();
}

function resize(steps) {
  paint.size = Math.min(200, Math.max(1, Math.round(paint.size * (steps > 0 ? 1.4 : 1 / 1.4))));
  showPaintState();
}

function showPaintState() {
  if (!paint.on) return;
  $("brush-size").textContent = ` ${paint.size} px `;
  const painted = paint.map.reduce((n, v) => n + (v ? 1 : 0), 0);
  $("paint-state").textContent = `${paint.tool === "brush" ? "painting " + className(paint.cls) : "erasing"} · ${painted} pixels painted · ${paint.strokes.length} strokes`;
}

function dab(event) {
  const canvas = $("paint");
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * paint.width / box.width;
  const y = (event.clientY - box.top) * paint.height / box.height;
  const from = paint.last || { x, y };
  const steps = Math.max(1, Math.ceil(Math.hypot(x - from.x, y - from.y) / Math.max(1, paint.size / 3)));
  const value = paint.tool === "eraser" ? 0 : (paint.cls === VOID ? 255 : paint.cls + 1);
  const r = paint.size / 2, r2 = r * r;
  for (let s = 1; s <= steps; s++) {
    const cx = from.x + (x - from.x) * s / steps, cy = from.y + (y - from.y) * s / steps;
    for (let py = Math.max(0, Math.floor(cy - r)); py <= Math.min(paint.height - 1, Math.ceil(cy + r)); py++) {
      for (let px = Math.max(0, Math.floor(cx - r)); px <= Math.min(paint.width - 1, Math.ceil(cx + r)); px++) {
        const dx = px + 0.5 - cx, dy = py + 0.5 - cy;
        if (dx * dx + dy * dy <= r2) paint.map[py * paint.width + px] = value;
      }
    }
  }
  paint.last = { x, y };
  render();
}

function colorOf(value) {
  if (value === 255) return [20, 20, 20];
  const c = state.info.classes.find((k) => k.id === value - 1);
  return c ? c.color : [255, 0, 255];
}

function render() {
  const canvas = $("paint");
  const context = canvas.getContext("2d");
  const image = context.createImageData(paint.width, paint.height);
  const colors = new Map();
  for (let i = 0; i < paint.map.length; i++) {
    const v = paint.map[i];
    if (!v) continue;
    if (!colors.has(v)) colors.set(v, colorOf(v));
    const [r, g, b] = colors.get(v);
    image.data.set([r, g, b, 170], i * 4);
  }
  context.putImageData(image, 0, 0);
}

function undoStroke() {
  if (!paint.strokes.length) return;
  paint.map = paint.strokes.pop();
  render();
  showPaintState();
}

function paintingPng() {
  const canvas = document.createElement("canvas");
  canvas.width = paint.width;
  canvas.height = paint.height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(paint.width, paint.height);
  for (let i = 0; i < paint.map.length; i++) {
    image.data[i * 4] = paint.map[i];
    image.data[i * 4 + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas.toDataURL("image/png");
}

function sendPainting() {
  if (!paint.on || !state.query) return;
  if (!paint.map.some((v) => v)) { $("message").textContent = "nothing painted yet: paint a part, or Esc"; return; }
  const q = state.query, png = paintingPng();
  return exclusive(async () => {
    try {
      await api("/api/paint", { annotator: state.name, image_id: q.image_id, segment_id: q.segment_id, label: null, paint: png });
      $("message").textContent = `${q.image_id}/${q.segment_id}: painted`;
    } catch (error) {
      if (nameTaken(error, state.name)) return;
      $("message").textContent = error.message;
      return;  // the painting stays for another try
    }
    stopPainting();
    await next();
  });
}

function onPaintKey(event) {
  const key = event.key.toLowerCase();
  const index = KEYS.indexOf(event.key);
  if ((event.ctrlKey || event.metaKey) && key === "z") undoStroke();
  else if (event.ctrlKey || event.metaKey || event.altKey) return false;
  else if (key === "escape") stopPainting();
  else if (key === "enter") sendPainting();
  else if (key === "b") setTool("brush");
  else if (key === "e") setTool("eraser");
  else if (key === "u" || key === "backspace") undoStroke();
  else if (key === "-") resize(-1);
  else if (key === "=" || key === "+") resize(1);
  else if (key === "x") setBrushClass(VOID);
  else if (index >= 0 && index < state.info.classes.length) setBrushClass(state.info.classes[index].id);
  else return false;
  return true;
}

start().catch((error) => { document.body.textContent = `a2lc: ${error.message}`; });
