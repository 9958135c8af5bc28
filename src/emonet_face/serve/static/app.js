// The emonet-face page: sends pictures to /v1/predict (the same API as every other client) and
// draws what comes back. No framework, no CDN: everything here is served by the server itself.
// Emotion names, families and colours come from /v1/info (the package's taxonomy), never from here.
//
// Files: app.js (this one: info, still pictures, charts, table, downloads and the helpers shared by
// every mode: drawFaces, top3, percent, familyColour, download, csvCell), live.js (the Live mode over
// the WebSocket /v1/stream). Classic scripts share one global scope, loaded in that order.
//
// Extension points, for additions that live in their own file and do not edit this one:
// - hooks.faceCard: functions (card, row, picture) called for every face card drawn for a still
//   picture; `picture` is {file, name, bitmap, canvas, scale} (canvas: the picture as drawn, in a
//   .stage that add-ons may draw over; scale: its pixels per picture pixel). The card's bars are
//   <rect class="bar" data-key=KEY>.
// - hooks.rows: functions (rows) called with every batch of rows added to the table.
//
// Faces are numbered as the table's `face` column (0-based, left to right) on the picture, in the
// cards and in every caption: one number per face everywhere (faceNumber).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, rows: [], columns: [], names: new Set(), snaps: 0 };
const hooks = { faceCard: [], rows: [] };
const TITLES = {
  400: "This request could not be used",
  401: "An API key is needed",
  413: "Too large",
  422: "A parameter is not right",
  503: "The server is busy or still loading",
};

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function errorText(response) {
  let detail = "";
  try {
    detail = (await response.json()).error || "";
  } catch (_) {
    detail = response.statusText;
  }
  const title = TITLES[response.status] || `The server answered ${response.status}`;
  return `${title}: ${detail}`;
}

// --- model info, legend ------------------------------------------------------------------------
async function loadInfo() {
  let response;
  try {
    response = await fetch("/v1/info", { headers: authHeaders() });
  } catch (err) {
    $("model-info").textContent = `Cannot reach the server (${err.message}); is it running?`;
    return;
  }
  if (response.status === 401) {
    $("key-label").hidden = false;
    $("model-info").textContent = "This server needs an API key: enter it above, then pick pictures.";
    return;
  }
  if (response.status === 503) {
    $("model-info").textContent = "The model is loading…";
    setTimeout(loadInfo, 1000);
    return;
  }
  if (!response.ok) {
    $("model-info").textContent = await errorText(response);
    return;
  }
  const info = await response.json();
  state.info = info;
  state.colour = Object.fromEntries(info.families.map((f) => [f.name, f.colour]));
  state.emotion = Object.fromEntries(info.emotions.map((e) => [e.key, e]));
  $("model-info").textContent =
    `model: ${info.heads} · encoder: ${info.encoder} · ${info.precision} on ${info.device} · backend ${info.backend} · ` +
    `emonet-face ${info.package_version}`;
  $("faces").value = info.settings.faces;
  showFacesHint();
  $("legend").replaceChildren(
    ...info.families.map((f) => {
      const span = document.createElement("span");
      span.style.setProperty("--c", f.colour);
      span.textContent = f.name;
      return span;
    }),
  );
}

// --- sending pictures ----------------------------------------------------------------------------
function uniqueName(name) {
  // rows name their picture by file name: two different pictures must not share one
  let candidate = name;
  for (let n = 2; state.names.has(candidate); n++) {
    const dot = name.lastIndexOf(".");
    candidate = dot > 0 ? `${name.slice(0, dot)} (${n})${name.slice(dot)}` : `${name} (${n})`;
  }
  state.names.add(candidate);
  return candidate;
}

async function score(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  if (!state.info) await loadInfo();
  showError("");
  const form = new FormData();
  const named = files.map((file) => ({ file, name: uniqueName(file.name || "picture.png") }));
  for (const { file, name } of named) form.append("file", file, name);
  const query = new URLSearchParams({ faces: $("faces").value });
  $("busy").hidden = false;
  let response;
  try {
    response = await fetch(`/v1/predict?${query}`, { method: "POST", body: form, headers: authHeaders() });
  } catch (err) {
    showError(`Could not reach the server (${err.message}). Is it still running?`);
    named.forEach(({ name }) => state.names.delete(name));
    return;
  } finally {
    $("busy").hidden = true;
  }
  if (!response.ok) {
    showError(await errorText(response));
    named.forEach(({ name }) => state.names.delete(name));
    if (response.status === 401) $("key-label").hidden = false;
    return;
  }
  const { rows } = await response.json();
  addRows(rows);
  for (const { file, name } of named) await drawPicture(file, name, rows.filter((r) => r.path === name));
  const failed = rows.filter((r) => r.error);
  if (failed.length) showError(`Some pictures could not be scored:\n${failed.map((r) => r.error).join("\n")}`);
}

function addRows(rows) {
  for (const row of rows) for (const column of Object.keys(row)) if (!state.columns.includes(column)) state.columns.push(column);
  state.rows.push(...rows);
  $("results").hidden = false;
  renderTable();
  hooks.rows.forEach((fn) => fn(rows));
}

// --- pictures with boxes -------------------------------------------------------------------------
function percent(p) {
  return p >= 0.1 ? `${Math.round(p * 100)}%` : `${(p * 100).toFixed(1)}%`;
}

function top3(row) {
  return ["top1", "top2", "top3"]
    .map((c) => row[c])
    .filter(Boolean)
    .map((key) => ({ key, name: state.emotion[key]?.name || key, p: row[`prob.${key}`] }));
}

function familyColour(key) {
  return state.colour[state.emotion[key]?.family] || "#555";
}

async function drawPicture(file, name, rows) {
  const box = document.createElement("div");
  box.className = "picture";
  const title = document.createElement("h3");
  title.textContent = name;
  box.append(title);
  $("pictures").append(box);
  const scored = rows.filter((r) => r.top1);
  if (!rows.length || rows.every((r) => r.error)) {
    const p = document.createElement("p");
    p.className = "row-error";
    p.textContent = rows.length ? rows[0].error : "no rows came back for this picture";
    box.append(p);
    return;
  }
  if (!scored.length) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = "No face found in this picture (try Faces: none for an already cropped face).";
    box.append(p);
  }
  const picture = { file, name, bitmap: null, canvas: null, scale: 1 };
  if (file.type.startsWith("image/") || !file.type) {
    try {
      picture.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
      Object.assign(picture, pictureCanvas(picture.bitmap, scored));
      const stage = Object.assign(document.createElement("div"), { className: "stage" });
      stage.append(picture.canvas);
      box.append(stage);
    } catch (_) {
      // a format the browser cannot show (e.g. HEIC): the scores below are still right
    }
  }
  const faces = document.createElement("div");
  faces.className = "faces";
  scored.forEach((row) => faces.append(faceCard(row, picture)));
  box.append(faces);
}

function faceNumber(row) {
  // the table's `face` value (0-based); a whole-picture row has none
  return row.face == null || row.face === "" ? null : Number(row.face);
}

function pictureCanvas(bitmap, rows) {
  // the picture with its faces' boxes and labels: {canvas, scale} (canvas pixels per picture pixel)
  const scale = Math.min(1, 900 / bitmap.width);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const shown = Math.min(canvas.width, $("pictures").clientWidth || canvas.width);
  const faces = rows.map((row) => ({ row, label: rows.length > 1 && faceNumber(row) != null ? `${faceNumber(row)}` : "" }));
  canvas.labels = drawFaces(ctx, faces, scale, labelFont(canvas.width, shown), { badges: true });
  return { canvas, scale };
}

function labelFont(width, shownWidth) {
  // at least 13 px as the picture is shown (a large picture shrunk on a phone keeps readable labels)
  return Math.round(Math.max(12, width / 55, (13 * width) / Math.max(1, shownWidth)));
}

function drawFaces(ctx, faces, scale, font, { badges = false } = {}) {
  // Boxes and top-3 labels for `faces` ([{row, label}], boxes in the row's pixels × scale). Labels
  // are never cut to the box: each block goes where it covers no other label and no face (below the
  // box, above it, beside it; a thin line joins a label to its face), and shows the top emotion alone
  // where three lines find no free place. With `badges` (still pictures, whose cards name every
  // emotion), a crowded picture where even one line per face would cover another label or a face
  // (a group photo on a phone) shows each face's number alone instead: a small badge by its box.
  // Returns the labels drawn: [{text, key, x, y, w, h, face, font, fits, badge}] (face: its index in
  // `faces`), and keeps the boxes drawn in ctx.canvas.boxes: [{x, y, w, h, key}] (tests and add-ons
  // read both).
  const W = ctx.canvas.width, H = ctx.canvas.height;
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  const gap = 2;
  const boxes = faces.map(({ row }) => row.box_w != null && row.box_h != null
    ? { x: row.box_x * scale, y: row.box_y * scale, w: row.box_w * scale, h: row.box_h * scale } : null);
  faces.forEach(({ row }, i) => {
    if (!boxes[i]) return;
    const b = boxes[i];
    ctx.lineWidth = Math.round(Math.max(2, font / 6));
    ctx.strokeStyle = familyColour(row.top1);
    ctx.strokeRect(Math.round(b.x), Math.round(b.y), Math.round(b.w), Math.round(b.h)); // whole pixels: crisp lines
  });
  ctx.canvas.boxes = boxes.map((b, i) => b && { ...b, key: faces[i].row.top1 });
  // Two passes: every face first gets its top emotion on one line (the most important thing to read),
  // then each label grows to three lines where the larger block still covers no label and no face.
  const texts = faces.map(({ row, label }) => top3(row).map((t, k) => (
    { key: t.key, text: `${k === 0 && label ? `${label} · ` : ""}${t.name} ${percent(t.p)}` })));
  const faceBoxes = boxes.filter(Boolean); // a label covers no face, its own included
  const spotFor = (i, block, others) => {
    const b = boxes[i] || { x: 4, y: 4, w: 0, h: 0 };
    // a line wider than the picture (a long name on a narrow one) gets a smaller font, never a cut
    const size = Math.floor(font * Math.min(1, (W - 8) / Math.max(...block.map((l) => ctx.measureText(l.text).width))));
    const lh = size + 6;
    ctx.font = `600 ${size}px system-ui, sans-serif`;
    const w = Math.min(W, Math.max(...block.map((l) => ctx.measureText(l.text).width)) + 8);
    ctx.font = `600 ${font}px system-ui, sans-serif`;
    const h = block.length * lh + (block.length - 1) * gap;
    const centre = b.x + b.w / 2 - w / 2;
    const spots = boxes[i]
      ? [[b.x, b.y + b.h + 3], [centre, b.y + b.h + 3], [b.x, b.y - h - 3], [centre, b.y - h - 3],
         [b.x + b.w + 3, b.y], [b.x - w - 3, b.y]]
      : [[b.x, b.y]];
    let choice = null;
    for (const [sx, sy] of spots) {
      const r = { x: Math.min(Math.max(0, sx), W - w), y: Math.min(Math.max(0, sy), H - h), w, h };
      const cost = 10 * others.reduce((c, p) => c + overlap(r, p), 0) + faceBoxes.reduce((c, o) => c + overlap(r, o), 0);
      if (!choice || cost < choice.cost) choice = { ...r, cost, size, lh };
      if (cost === 0) break;
    }
    return choice;
  };
  const spots = [], blocks = [];
  texts.forEach((lines, i) => {
    if (!lines.length) return;
    blocks[i] = lines.slice(0, 1);
    spots[i] = spotFor(i, blocks[i], spots.filter(Boolean));
  });
  const crowded = badges && faces.filter(({ label }) => label).length > 1 && spots.some((s) => s && s.cost > 0);
  if (crowded) {
    spots.length = 0;
    faces.forEach(({ row, label }, i) => {
      if (!texts[i].length) return;
      blocks[i] = [{ key: row.top1, text: label, badge: true }];
      spots[i] = spotFor(i, blocks[i], spots.filter(Boolean));
    });
  }
  texts.forEach((lines, i) => {
    if (crowded || lines.length < 2) return;
    const full = spotFor(i, lines, spots.filter((r, j) => r && j !== i));
    if (full.cost === 0) [blocks[i], spots[i]] = [lines, full];
  });
  const drawn = [];
  spots.forEach((spot, i) => {
    if (!spot) return;
    if (boxes[i]) leader(ctx, boxes[i], spot, familyColour(faces[i].row.top1));
    ctx.font = `600 ${spot.size}px system-ui, sans-serif`;
    blocks[i].forEach((l, k) => {
      const y = spot.y + k * (spot.lh + gap);
      ctx.fillStyle = familyColour(l.key);
      ctx.globalAlpha = 0.92;
      ctx.fillRect(spot.x, y, spot.w, spot.lh);
      ctx.globalAlpha = 1;
      ctx.fillStyle = "white";
      ctx.fillText(l.text, spot.x + 4, y + 3);
      drawn.push({ text: l.text, key: l.key, x: spot.x, y, w: spot.w, h: spot.lh, face: i, font: spot.size,
                   fits: ctx.measureText(l.text).width + 8 <= spot.w + 0.5, badge: Boolean(l.badge) });
    });
  });
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  return drawn;
}

function leader(ctx, box, label, colour) {
  // a thin line from a face to its label when the label had to move away from the box
  const lx = Math.min(Math.max(box.x + box.w / 2, label.x), label.x + label.w);
  const ly = label.y > box.y + box.h ? label.y : label.y + label.h < box.y ? label.y + label.h : label.y + label.h / 2;
  const bx = Math.min(Math.max(lx, box.x), box.x + box.w), by = Math.min(Math.max(ly, box.y), box.y + box.h);
  if (Math.hypot(lx - bx, ly - by) < 6) return;
  ctx.beginPath();
  ctx.moveTo(bx, by);
  ctx.lineTo(lx, ly);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colour;
  ctx.stroke();
}

function overlap(a, b) {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

// --- per-face chart: 40 emotions grouped by family + the 4 dimensions --------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function faceCard(row, picture) {
  const card = document.createElement("div");
  card.className = "face";
  const h = document.createElement("h4");
  const where = row.region === "whole_image" ? " (whole picture)" : "";
  const frame = row.frame != null ? ` · frame ${row.frame} (${Number(row.time).toFixed(2)} s)` : "";
  const number = faceNumber(row);
  h.textContent = `${number != null && row.region !== "whole_image" ? `Face ${number}` : "Face"}${where}${frame}`;
  card.dataset.face = number ?? "";
  card.append(h);
  card.append(barChart(row));
  hooks.faceCard.forEach((fn) => fn(card, row, picture));
  return card;
}

function barChart(row) {
  const info = state.info;
  const width = 400, labelW = 196, barW = 160, rowH = 12, famH = 16, dimH = 30;
  const probs = info.emotions.map((e) => row[`prob.${e.key}`] ?? 0);
  const maxP = Math.max(0.05, ...probs);
  let y = 4;
  // drawn in a 400-wide coordinate system, shown as wide as the card allows (phones)
  const chart = svg("svg", { role: "img", "aria-label": "emotion probabilities by family", class: "chart" });
  for (const family of info.families) {
    chart.append(svg("text", { x: 0, y: y + 11, "font-size": 11, "font-weight": 700, fill: family.colour }, family.name));
    y += famH;
    for (const e of info.emotions.filter((e) => e.family === family.name)) {
      const p = row[`prob.${e.key}`] ?? 0;
      const name = e.name.length > 34 ? `${e.name.slice(0, 33)}…` : e.name;
      const label = svg("text", { x: labelW - 4, y: y + 9, "font-size": 10, "text-anchor": "end", fill: "#333" }, name);
      label.append(svg("title", {}, `${e.name}: ${percent(p)}`));
      chart.append(label);
      chart.append(svg("rect", { x: labelW, y: y + 1, width: Math.max(0.5, (p / maxP) * barW), height: rowH - 3,
                                 fill: family.colour, "data-key": e.key, class: "bar" }));
      chart.append(svg("text", { x: labelW + (p / maxP) * barW + 3, y: y + 9, "font-size": 9, fill: "#555" }, percent(p)));
      y += rowH;
    }
    y += 4;
  }
  chart.append(svg("text", { x: 0, y: y + 12, "font-size": 9, fill: "#777" },
                   "Dimensions on their rating scales (raw head outputs):"));
  y += 20;
  for (const d of info.dimensions) {
    const value = row[`raw.${d.key}`];
    const shown = value == null ? "n/a" : value.toFixed(2);
    chart.append(svg("text", { x: 0, y: y + 10, "font-size": 11, fill: "#333" }, `${d.name}: ${shown}`));
    const x0 = labelW, x1 = labelW + barW;
    chart.append(svg("line", { x1: x0, x2: x1, y1: y + 7, y2: y + 7, stroke: "#bbb", "stroke-width": 4 }));
    chart.append(svg("text", { x: x0, y: y + 22, "font-size": 9, fill: "#777", "text-anchor": "middle" }, String(d.low)));
    chart.append(svg("text", { x: x1, y: y + 22, "font-size": 9, fill: "#777", "text-anchor": "middle" }, String(d.high)));
    if (value != null) {
      const clamped = Math.min(Math.max(value, d.low), d.high);
      const cx = x0 + ((clamped - d.low) / (d.high - d.low)) * barW;
      chart.append(svg("circle", { cx, cy: y + 7, r: 5, fill: "#0072B2", class: "dimension", "data-key": d.key }));
    }
    y += dimH;
  }
  chart.setAttribute("viewBox", `0 0 ${width} ${y}`);
  return chart;
}

// --- table and downloads ---------------------------------------------------------------------------
function renderTable() {
  const info = state.info;
  const dims = info ? info.dimensions.map((d) => d.key) : [];
  const firstScore = state.columns.indexOf("top1");
  const ids = firstScore < 0 ? state.columns.filter((c) => c !== "error") : state.columns.slice(0, firstScore);
  const shown = [...ids, "top1", "top2", "top3", ...dims, "error"];
  const head = document.createElement("tr");
  shown.forEach((c) => head.append(Object.assign(document.createElement("th"), { textContent: c })));
  const body = state.rows.map((row) => {
    const tr = document.createElement("tr");
    for (const c of shown) {
      const td = document.createElement("td");
      const v = row[c];
      if (typeof v === "number") {
        td.className = "num";
        td.textContent = Number.isInteger(v) ? String(v) : v.toFixed(3);
      } else if (c.startsWith("top") && v) {
        td.textContent = `${state.emotion?.[v]?.name || v} (${percent(row[`prob.${v}`])})`;
      } else {
        td.textContent = v ?? "";
      }
      tr.append(td);
    }
    return tr;
  });
  $("rows").replaceChildren(head, ...body);
}

function csvCell(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

$("download-csv").addEventListener("click", () => {
  const lines = [state.columns.map(csvCell).join(",")];
  for (const row of state.rows) lines.push(state.columns.map((c) => csvCell(row[c])).join(","));
  download("emonet-face-scores.csv", "text/csv", lines.join("\n") + "\n");
});
$("download-json").addEventListener("click", () => {
  download("emonet-face-scores.json", "application/json", JSON.stringify({ rows: state.rows }, null, 1));
});
$("clear").addEventListener("click", () => {
  Object.assign(state, { rows: [], columns: [], names: new Set() });
  $("pictures").replaceChildren();
  $("rows").replaceChildren();
  $("results").hidden = true;
  showError("");
});

// --- inputs: drop, picker, webcam ----------------------------------------------------------------
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  score(e.dataTransfer.files);
});
$("picker").addEventListener("change", (e) => { score(e.target.files); e.target.value = ""; });
$("api-key").addEventListener("change", loadInfo);
function showFacesHint() {
  // the select shows a short word (never cut on a phone); what it means is written beside it
  $("faces-hint").textContent = $("faces").selectedOptions[0]?.dataset.hint || "";
}
$("faces").addEventListener("change", showFacesHint);
showFacesHint();

let stream = null;
function closeCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("camera").hidden = true;
}
$("camera-button").addEventListener("click", async () => {
  if (!navigator.mediaDevices?.getUserMedia) {
    showError("This browser cannot use a camera here (a camera needs https or http://localhost).");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    showError(`The camera could not be opened (${err.name}: ${err.message}). Allow camera access and try again.`);
    return;
  }
  $("camera-video").srcObject = stream;
  $("camera").hidden = false;
});
$("camera-close").addEventListener("click", closeCamera);
$("snap").addEventListener("click", () => {
  const video = $("camera-video");
  if (!video.videoWidth) {
    showError("The camera has not delivered a picture yet; wait a moment and try again.");
    return;
  }
  const canvas = Object.assign(document.createElement("canvas"), { width: video.videoWidth, height: video.videoHeight });
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    state.snaps += 1;
    score([new File([blob], `webcam-${state.snaps}.png`, { type: "image/png" })]);
  }, "image/png");
});

loadInfo();
