// partseg annotate: paint part masks on a canvas; every finished edit is saved to the server.
//
// A "doc" is one image being annotated: its pixels, its mask (Uint8Array of label ids,
// 255 = unlabelled/ignore), its undo/redo history and its save state. Docs stay in memory
// while the page is open, so switching images keeps their history.
"use strict";

const IGNORE = 255;
const ZOOMS = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32];
const MAX_CANVAS_SIDE = 8192;         // browsers refuse much larger canvases
const HISTORY_BYTES = 64 * 1024 * 1024; // undo memory per image
const RETRY_MS = 3000;                  // retry a save the server did not answer

const app = {
  classes: [], palette: [], colours: null,   // colours: Uint32Array RGBA per label id (0..255)
  images: [], index: -1, doc: null, docs: new Map(), suggest: 0,
  tool: "brush", classId: 0, brushSize: 3, tolerance: 255,
  opacity: 0.55, overlayVisible: true, showUnlabelled: true, zoom: null,
  stroke: null, hover: null, loadToken: 0,
};

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d");

// ---------------------------------------------------------------------------- server calls

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

const imageUrl = (stem, what) => `/api/images/${encodeURIComponent(stem)}/${what}`;

// ---------------------------------------------------------------------------- docs

async function loadDoc(entry) {
  const picture = new Image();
  picture.src = imageUrl(entry.stem, "image");
  await picture.decode();
  const width = picture.naturalWidth, height = picture.naturalHeight;
  const imageCanvas = makeCanvas(width, height);
  const imageCtx = imageCanvas.getContext("2d");
  imageCtx.drawImage(picture, 0, 0);
  const doc = {
    stem: entry.stem, width, height, imageCanvas,
    pixels: imageCtx.getImageData(0, 0, width, height).data,
    mask: new Uint8Array(width * height).fill(IGNORE),
    maskCanvas: makeCanvas(width, height),
    unlabelledCanvas: makeCanvas(width, height),  // opaque where no class is painted yet
    undo: [], redo: [], version: 0, savedVersion: 0,
    saving: false, pending: false, error: null, readOnly: false, loadError: null,
  };
  const response = await fetch(imageUrl(entry.stem, "mask") + "?format=raw", { cache: "no-store" });
  if (response.ok) {
    const saved = new Uint8Array(await response.arrayBuffer());
    if (saved.length === doc.mask.length) doc.mask.set(saved);
    else { doc.readOnly = true; doc.loadError = "the saved mask does not match the image size"; }
  } else if (response.status !== 404) {
    // A mask the server refuses (wrong size, unknown ids): show why; never overwrite it.
    doc.readOnly = true;
    doc.loadError = ((await response.json().catch(() => null)) || {}).error || response.statusText;
  }
  refreshMaskCanvas(doc);
  return doc;
}

function makeCanvas(width, height) {
  const c = document.createElement("canvas");
  c.width = width; c.height = height;
  return c;
}

function refreshMaskCanvas(doc) {
  const maskCtx = doc.maskCanvas.getContext("2d");
  const colours = maskCtx.createImageData(doc.width, doc.height);
  const unlabelledCtx = doc.unlabelledCanvas.getContext("2d");
  const unlabelled = unlabelledCtx.createImageData(doc.width, doc.height);
  const out = new Uint32Array(colours.data.buffer), holes = new Uint32Array(unlabelled.data.buffer);
  for (let i = 0; i < doc.mask.length; i++) {
    out[i] = app.colours[doc.mask[i]];
    holes[i] = doc.mask[i] === IGNORE ? 0xffffffff : 0;
  }
  maskCtx.putImageData(colours, 0, 0);
  unlabelledCtx.putImageData(unlabelled, 0, 0);
}

// Diagonal light/dark stripes, visible on both dark and bright images.
function makeHatch() {
  const tile = makeCanvas(8, 8), c = tile.getContext("2d");
  c.lineWidth = 1.5;
  for (const [colour, shift] of [["rgba(255,255,255,0.55)", 0], ["rgba(0,0,0,0.35)", 2]]) {
    c.strokeStyle = colour;
    c.beginPath();
    for (const d of [-8, 0, 8]) { c.moveTo(d + shift, 8); c.lineTo(d + shift + 8, 0); }
    c.stroke();
  }
  return ctx.createPattern(tile, "repeat");
}

function buildColours(palette) {
  // Packed RGBA in the machine's byte order; unlabelled (and unknown ids) stay transparent.
  const colours = new Uint32Array(256);
  const bytes = new Uint8Array(colours.buffer);
  palette.forEach(([r, g, b], id) => bytes.set([r, g, b, 255], id * 4));
  return colours;
}

// ---------------------------------------------------------------------------- editing

// Paint a disc of diameter `size` (image pixels) centred on (x, y); the pixel under the
// pointer is always painted, so size 1 paints exactly one pixel.
function stamp(doc, x, y, size, value) {
  const r = size / 2, { width, height, mask } = doc;
  let changed = setPixel(doc, Math.floor(x), Math.floor(y), value);
  for (let j = Math.floor(y - r); j <= Math.ceil(y + r); j++) {
    if (j < 0 || j >= height) continue;
    for (let i = Math.floor(x - r); i <= Math.ceil(x + r); i++) {
      if (i < 0 || i >= width) continue;
      const dx = i + 0.5 - x, dy = j + 0.5 - y;
      if (dx * dx + dy * dy < r * r && mask[j * width + i] !== value) {
        mask[j * width + i] = value;
        changed = true;
      }
    }
  }
  return changed;
}

function setPixel(doc, i, j, value) {
  if (i < 0 || j < 0 || i >= doc.width || j >= doc.height) return false;
  const k = j * doc.width + i;
  if (doc.mask[k] === value) return false;
  doc.mask[k] = value;
  return true;
}

// Stamp along a segment at half-pixel steps so fast strokes have no gaps.
function paintSegment(doc, from, to, size, value) {
  const steps = Math.max(1, Math.ceil(Math.hypot(to[0] - from[0], to[1] - from[1]) / 0.5));
  let changed = false;
  for (let s = 1; s <= steps; s++) {
    const t = s / steps;
    changed = stamp(doc, from[0] + (to[0] - from[0]) * t, from[1] + (to[1] - from[1]) * t, size, value) || changed;
  }
  return changed;
}

// 4-connected fill of the region that has the clicked pixel's label and, unless the
// tolerance is 255, an image colour within `tolerance` of the clicked pixel's colour.
function floodFill(doc, x, y, value, tolerance) {
  const { width, height, mask, pixels } = doc;
  if (x < 0 || y < 0 || x >= width || y >= height) return false;
  const seed = y * width + x, label = mask[seed];
  const useColour = tolerance < 255;
  if (label === value && !useColour) return false;
  const sr = pixels[seed * 4], sg = pixels[seed * 4 + 1], sb = pixels[seed * 4 + 2];
  const inRegion = (k) => mask[k] === label && (!useColour ||
    Math.max(Math.abs(pixels[k * 4] - sr), Math.abs(pixels[k * 4 + 1] - sg),
             Math.abs(pixels[k * 4 + 2] - sb)) <= tolerance);
  const visited = new Uint8Array(width * height);
  const todo = [seed];
  const region = [];
  visited[seed] = 1;
  while (todo.length) {
    const k = todo.pop();
    region.push(k);
    const i = k % width, j = (k - i) / width;
    for (const [ni, nj] of [[i - 1, j], [i + 1, j], [i, j - 1], [i, j + 1]]) {
      if (ni < 0 || nj < 0 || ni >= width || nj >= height) continue;
      const n = nj * width + ni;
      if (!visited[n] && inRegion(n)) { visited[n] = 1; todo.push(n); }
    }
  }
  let changed = false;
  for (const k of region) if (mask[k] !== value) { mask[k] = value; changed = true; }
  return changed;
}

function fillUnlabelled(doc, value) {
  let changed = false;
  for (let k = 0; k < doc.mask.length; k++) {
    if (doc.mask[k] === IGNORE) { doc.mask[k] = value; changed = true; }
  }
  return changed;
}

// Run an edit as one undoable step; save it when it changed something.
function edit(doc, change) {
  if (doc.readOnly) return;
  const before = doc.mask.slice();
  if (!change()) return;
  commit(doc, before);
}

function commit(doc, before) {
  pushLimited(doc.undo, before, doc.mask.length);
  doc.redo.length = 0;
  changed(doc);
}

function pushLimited(stack, snapshot, size) {
  stack.push(snapshot);
  const keep = Math.max(1, Math.floor(HISTORY_BYTES / size));
  if (stack.length > keep) stack.splice(0, stack.length - keep);
}

function undo() { travel(app.doc, "undo", "redo"); }
function redo() { travel(app.doc, "redo", "undo"); }

function travel(doc, from, to) {
  if (!doc || doc.readOnly || !doc[from].length) return;
  pushLimited(doc[to], doc.mask.slice(), doc.mask.length);
  doc.mask.set(doc[from].pop());
  changed(doc);
}

function changed(doc) {
  doc.version++;
  refreshMaskCanvas(doc);
  render();
  updateControls();
  save(doc);
}

// ---------------------------------------------------------------------------- saving

// One save in flight per image; edits made meanwhile are sent when it returns.
async function save(doc) {
  if (doc.saving) { doc.pending = true; return; }
  doc.saving = true;
  doc.pending = false;
  const version = doc.version;
  const body = doc.mask.slice();
  updateSaveStatus();
  try {
    const result = await fetchJson(imageUrl(doc.stem, "mask"), {
      method: "PUT", headers: { "Content-Type": "application/octet-stream" }, body, keepalive: body.length < 60000,
    });
    doc.savedVersion = Math.max(doc.savedVersion, version);
    doc.error = null;
    updateImageEntry(result.image);
    setProgress(result.annotated, result.total);
  } catch (error) {
    doc.error = error.message;
    // The server refused this mask (4xx): resending it cannot help. Otherwise retry.
    if (!(error.status >= 400 && error.status < 500)) {
      doc.pending = true;
      doc.retryAt = Date.now() + RETRY_MS;
    }
  } finally {
    doc.saving = false;
    if (doc.pending) {
      const wait = doc.error ? Math.max(0, doc.retryAt - Date.now()) : 0;
      setTimeout(() => save(doc), wait);
    }
    updateSaveStatus();
  }
}

function unsavedDocs() {
  return [...app.docs.values()].filter((d) => d.version !== d.savedVersion);
}

function updateSaveStatus() {
  const status = $("save-status");
  const docs = [...app.docs.values()];
  const failed = docs.find((d) => d.error && d.version !== d.savedVersion);
  const busy = docs.some((d) => d.saving || d.pending);
  if (failed) {
    status.dataset.state = "error";
    status.textContent = `Not saved (${failed.stem}): ${failed.error}`;
  } else if (busy || unsavedDocs().length) {
    status.dataset.state = "saving";
    status.textContent = "Saving…";
  } else {
    status.dataset.state = "saved";
    status.textContent = "All changes saved";
  }
}

// ---------------------------------------------------------------------------- drawing

function render() {
  const doc = app.doc;
  if (!doc) return;
  const w = Math.round(doc.width * app.zoom), h = Math.round(doc.height * app.zoom);
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  ctx.imageSmoothingEnabled = false;   // nearest neighbour: every image pixel stays a crisp square
  ctx.clearRect(0, 0, w, h);
  ctx.drawImage(doc.imageCanvas, 0, 0, w, h);
  if (app.overlayVisible && app.opacity > 0) {
    ctx.globalAlpha = app.opacity;
    ctx.drawImage(doc.maskCanvas, 0, 0, w, h);
    ctx.globalAlpha = 1;
  }
  if (app.showUnlabelled) drawHatch(doc, w, h);
  drawCursor();
}

// Hatch the unlabelled pixels: scale their shape up, then keep the stripes only inside it.
function drawHatch(doc, w, h) {
  const scratch = app.scratch || (app.scratch = makeCanvas(w, h));
  if (scratch.width !== w || scratch.height !== h) { scratch.width = w; scratch.height = h; }
  const s = scratch.getContext("2d");
  s.globalCompositeOperation = "source-over";
  s.imageSmoothingEnabled = false;
  s.clearRect(0, 0, w, h);
  s.drawImage(doc.unlabelledCanvas, 0, 0, w, h);
  s.globalCompositeOperation = "source-in";
  s.fillStyle = app.hatch || (app.hatch = makeHatch());
  s.fillRect(0, 0, w, h);
  ctx.drawImage(scratch, 0, 0);
}

function drawCursor() {
  if (!app.hover || app.tool === "fill") return;
  const [x, y] = app.hover, z = app.zoom;
  ctx.save();
  ctx.lineWidth = 1;
  ctx.setLineDash([3, 3]);
  for (const [colour, offset] of [["#000", 0], ["#fff", 3]]) {
    ctx.strokeStyle = colour;
    ctx.lineDashOffset = offset;
    ctx.beginPath();
    if (app.brushSize <= 2) {
      ctx.rect(Math.floor(x) * z + 0.5, Math.floor(y) * z + 0.5, z - 1, z - 1);
    } else {
      ctx.arc(x * z, y * z, (app.brushSize / 2) * z, 0, 2 * Math.PI);
    }
    ctx.stroke();
  }
  ctx.restore();
}

function fitZoom() {
  const doc = app.doc, viewport = $("viewport");
  const room = Math.min((viewport.clientWidth - 32) / doc.width, (viewport.clientHeight - 32) / doc.height);
  const fitting = ZOOMS.filter((z) => z <= room && allowedZoom(z));
  return fitting.length ? fitting[fitting.length - 1] : ZOOMS[0];
}

function allowedZoom(z) {
  return Math.max(app.doc.width, app.doc.height) * z <= MAX_CANVAS_SIDE;
}

function setZoom(z) {
  if (!app.doc || !allowedZoom(z)) return;
  app.zoom = z;
  render();
  updateControls();
}

function stepZoom(direction) {
  if (!app.doc) return;
  const bigger = ZOOMS.filter((z) => z > app.zoom + 1e-9 && allowedZoom(z));
  const smaller = ZOOMS.filter((z) => z < app.zoom - 1e-9);
  if (direction > 0 && bigger.length) setZoom(bigger[0]);
  if (direction < 0 && smaller.length) setZoom(smaller[smaller.length - 1]);
}

// ---------------------------------------------------------------------------- pointer

function imagePoint(event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) / rect.width * app.doc.width,
          (event.clientY - rect.top) / rect.height * app.doc.height];
}

function paintValue() { return app.tool === "eraser" ? IGNORE : app.classId; }

canvas.addEventListener("pointerdown", (event) => {
  const doc = app.doc;
  if (!doc || event.button !== 0 || doc.readOnly) return;
  const point = imagePoint(event);
  if (app.tool === "fill") {
    edit(doc, () => floodFill(doc, Math.floor(point[0]), Math.floor(point[1]), app.classId, app.tolerance));
    return;
  }
  canvas.setPointerCapture(event.pointerId);
  app.stroke = { doc, before: doc.mask.slice(), last: point, value: paintValue(), changed: false };
  app.stroke.changed = stamp(doc, point[0], point[1], app.brushSize, app.stroke.value);
  refreshMaskCanvas(doc);
  render();
});

canvas.addEventListener("pointermove", (event) => {
  if (!app.doc) return;
  const point = imagePoint(event);
  app.hover = point;
  const stroke = app.stroke;
  if (stroke && stroke.doc === app.doc) {
    // Coalesced events keep fast strokes faithful to the pointer's path.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const p = imagePoint(e);
      stroke.changed = paintSegment(stroke.doc, stroke.last, p, app.brushSize, stroke.value) || stroke.changed;
      stroke.last = p;
    }
    refreshMaskCanvas(stroke.doc);
  }
  render();
});

function endStroke() {
  const stroke = app.stroke;
  app.stroke = null;
  if (stroke && stroke.changed) commit(stroke.doc, stroke.before);
}

canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
canvas.addEventListener("pointerleave", () => { app.hover = null; render(); });

// Right-click picks the class under the pointer.
canvas.addEventListener("contextmenu", (event) => {
  event.preventDefault();
  if (!app.doc) return;
  const [x, y] = imagePoint(event).map(Math.floor);
  const label = app.doc.mask[y * app.doc.width + x];
  if (label !== IGNORE && label < app.classes.length) selectClass(label);
});

$("viewport").addEventListener("wheel", (event) => {
  if (!event.ctrlKey && !event.metaKey) return;  // plain wheel scrolls
  event.preventDefault();
  stepZoom(event.deltaY < 0 ? 1 : -1);
}, { passive: false });

// ---------------------------------------------------------------------------- controls

function toggleHatch(on) { app.showUnlabelled = on; updateControls(); render(); }

function selectTool(tool) { app.tool = tool; updateControls(); render(); }

function selectClass(id) {
  if (id < 0 || id >= app.classes.length) return;
  app.classId = id;
  if (app.tool === "eraser") app.tool = "brush";
  updateControls();
}

function setBrushSize(size) {
  app.brushSize = Math.min(64, Math.max(1, size));
  updateControls();
  render();
}

const TOOL_HINTS = {
  brush: "Paint the selected class. Right-click picks a class from the mask.",
  fill: "Click a region to fill it (pixels of the same label, connected; the tolerance also stops at colour changes).",
  eraser: "Makes pixels unlabelled (id 255, ignored when training). To mark background, paint class 0.",
};

function updateControls() {
  document.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("active", b.dataset.tool === app.tool));
  document.querySelectorAll("#classes li").forEach((li) =>
    li.classList.toggle("active", Number(li.dataset.id) === app.classId && app.tool !== "eraser"));
  $("tool-hint").textContent = TOOL_HINTS[app.tool];
  $("brush-size").value = app.brushSize;
  $("brush-size-value").textContent = `${app.brushSize} px`;
  $("tolerance").value = app.tolerance;
  $("tolerance-value").textContent = app.tolerance >= 255 ? "off (labels only)" : app.tolerance;
  $("opacity-value").textContent = app.overlayVisible ? `${Math.round(app.opacity * 100)}%` : "hidden (H)";
  $("fill-unlabelled-name").textContent = app.classes[app.classId] || "";
  const doc = app.doc;
  $("zoom-value").textContent = doc ? `${Math.round(app.zoom * 100)}%` : "";
  $("undo").disabled = !doc || !doc.undo.length || doc.readOnly;
  $("redo").disabled = !doc || !doc.redo.length || doc.readOnly;
  $("prev").disabled = app.index <= 0;
  $("next").disabled = app.index >= app.images.length - 1;
  $("fill-unlabelled").disabled = !doc || doc.readOnly;
  $("show-unlabelled").checked = app.showUnlabelled;
  if (doc) {
    const labelled = doc.mask.reduce((n, v) => n + (v !== IGNORE), 0) / doc.mask.length;
    $("image-labelled").textContent = `· ${Math.round(labelled * 100)}% labelled`;
  }
}

function buildClassList() {
  const list = $("classes");
  list.replaceChildren();
  app.classes.forEach((name, id) => {
    const li = document.createElement("li");
    li.dataset.id = id;
    li.title = `label id ${id}` + (id < 10 ? ` (key ${id})` : "");
    const [r, g, b] = app.palette[id];
    li.innerHTML = `<kbd></kbd><span class="swatch"></span><span class="name"></span><span class="id muted"></span>`;
    li.querySelector("kbd").textContent = id < 10 ? String(id) : "";
    li.querySelector(".swatch").style.background = `rgb(${r},${g},${b})`;
    li.querySelector(".name").textContent = name;
    li.querySelector(".id").textContent = `id ${id}`;
    li.addEventListener("click", () => selectClass(id));
    list.appendChild(li);
  });
}

function buildImageList() {
  const list = $("image-list");
  list.replaceChildren();
  app.images.forEach((entry, index) => {
    const li = document.createElement("li");
    li.dataset.stem = entry.stem;
    li.innerHTML = `<span class="dot"></span><span class="name"></span><span class="share muted"></span>`;
    li.querySelector(".name").textContent = entry.stem;
    // The annotate stage's pick: the candidates it suggests painting (any k will do).
    if (entry.rank && entry.rank <= app.suggest) {
      li.querySelector(".name").textContent += " ★";
      li.title = `suggested #${entry.rank}: paint any ${app.suggest} of these images`;
    }
    li.addEventListener("click", () => openImage(index));
    list.appendChild(li);
    paintImageEntry(li, entry);
  });
}

function paintImageEntry(li, entry) {
  li.classList.toggle("done", entry.annotated);
  li.classList.toggle("current", app.images[app.index] === entry);
  li.querySelector(".share").textContent = entry.annotated ? `${Math.round(entry.labelled * 100)}%` : "–";
}

function updateImageEntry(status) {
  const index = app.images.findIndex((e) => e.stem === status.stem);
  if (index < 0) return;
  app.images[index] = status;
  const li = document.querySelector(`#image-list li[data-stem="${CSS.escape(status.stem)}"]`);
  if (li) paintImageEntry(li, status);
}

function setProgress(annotated, total) {
  $("progress-text").textContent = `${annotated} of ${total} annotated`;
  $("progress-bar").style.width = `${total ? (100 * annotated) / total : 0}%`;
}

function showMessage(text) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
}

async function openImage(index) {
  if (index < 0 || index >= app.images.length) return;
  endStroke();
  const token = ++app.loadToken;
  const entry = app.images[index];
  let doc = app.docs.get(entry.stem);
  if (!doc) {
    try {
      doc = await loadDoc(entry);
    } catch (error) {
      showMessage(`Could not open ${entry.stem}: ${error.message}`);
      return;
    }
    if (!app.docs.has(entry.stem)) app.docs.set(entry.stem, doc);
    doc = app.docs.get(entry.stem);
  }
  if (token !== app.loadToken) return;  // the user moved on while this one loaded
  app.index = index;
  app.doc = doc;
  if (app.zoom === null || !allowedZoom(app.zoom)) app.zoom = fitZoom();
  $("image-name").textContent = entry.stem;
  $("image-index").textContent = `${index + 1} / ${app.images.length} · ${doc.width}×${doc.height}`;
  showMessage(doc.loadError ? `This mask cannot be edited: ${doc.loadError}` : "");
  document.querySelectorAll("#image-list li").forEach((li, i) => paintImageEntry(li, app.images[i]));
  render();
  updateControls();
}

function bindControls() {
  document.querySelectorAll("[data-tool]").forEach((b) => b.addEventListener("click", () => selectTool(b.dataset.tool)));
  $("brush-size").addEventListener("input", (e) => setBrushSize(Number(e.target.value)));
  $("tolerance").addEventListener("input", (e) => { app.tolerance = Number(e.target.value); updateControls(); });
  $("opacity").addEventListener("input", (e) => {
    app.opacity = Number(e.target.value) / 100;
    app.overlayVisible = true;
    updateControls();
    render();
  });
  $("show-unlabelled").addEventListener("change", (e) => toggleHatch(e.target.checked));
  $("zoom-in").addEventListener("click", () => stepZoom(1));
  $("zoom-out").addEventListener("click", () => stepZoom(-1));
  $("zoom-fit").addEventListener("click", () => setZoom(fitZoom()));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("prev").addEventListener("click", () => openImage(app.index - 1));
  $("next").addEventListener("click", () => openImage(app.index + 1));
  $("fill-unlabelled").addEventListener("click", () => app.doc && edit(app.doc, () => fillUnlabelled(app.doc, app.classId)));
  document.addEventListener("keydown", onKey);
  window.addEventListener("beforeunload", (event) => {
    if (unsavedDocs().length) { event.preventDefault(); event.returnValue = ""; }
  });
}

function onKey(event) {
  if (event.target instanceof HTMLInputElement && event.key.startsWith("Arrow")) return;  // sliders
  const key = event.key, ctrl = event.ctrlKey || event.metaKey;
  const lower = key.toLowerCase();
  let handled = true;
  if (ctrl && lower === "z") event.shiftKey ? redo() : undo();
  else if (ctrl && lower === "y") redo();
  else if (ctrl || event.altKey) handled = false;
  else if (/^[0-9]$/.test(key)) selectClass(Number(key));
  else if (lower === "b") selectTool("brush");
  else if (lower === "f" && event.shiftKey) app.doc && edit(app.doc, () => fillUnlabelled(app.doc, app.classId));
  else if (lower === "f") selectTool("fill");
  else if (lower === "e") selectTool("eraser");
  else if (key === "[") setBrushSize(app.brushSize - 1);
  else if (key === "]") setBrushSize(app.brushSize + 1);
  else if (key === "+" || key === "=") stepZoom(1);
  else if (key === "-" || key === "_") stepZoom(-1);
  else if (lower === "h") { app.overlayVisible = !app.overlayVisible; updateControls(); render(); }
  else if (lower === "u") toggleHatch(!app.showUnlabelled);
  else if (key === "ArrowRight" || lower === "n") openImage(app.index + 1);
  else if (key === "ArrowLeft" || lower === "p") openImage(app.index - 1);
  else handled = false;
  if (handled) event.preventDefault();
}

async function start() {
  bindControls();
  try {
    const [classes, listing] = await Promise.all([fetchJson("/api/classes"), fetchJson("/api/images")]);
    app.classes = classes.classes;
    app.palette = classes.palette;
    app.colours = buildColours(classes.palette);
    app.classId = app.classes.length > 1 ? 1 : 0;  // id 0 is usually background: start on a part
    app.images = listing.images;
    app.suggest = listing.suggest || 0;
    $("folder").textContent = listing.folder;
    setProgress(listing.annotated, listing.total);
    buildClassList();
    buildImageList();
    const firstTodo = app.images.findIndex((e) => !e.annotated);
    await openImage(firstTodo >= 0 ? firstTodo : 0);
  } catch (error) {
    showMessage(`Could not reach the annotation server: ${error.message}`);
  }
  updateControls();
}

// For tests and the console: how many edits are not on disk yet.
window.partsegAnnotate = { app, allSaved: () => !unsavedDocs().length && ![...app.docs.values()].some((d) => d.saving) };

start();
