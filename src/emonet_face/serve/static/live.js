// Live mode: the camera's frames go to the WebSocket /v1/stream as binary JPEG messages (the server
// numbers them from 0 in the order sent); each answer {"frame", "rows"} draws boxes and top-3 labels
// over the video, feeds a rolling one-minute timeline per person (track) and the CSV of every row.
// The server keeps only the newest frame waiting, so the page keeps at most two frames unanswered:
// the server is never idle, no frame waits behind old ones, and the rate follows what it sustains.
// Uses app.js's globals: $, state, showError, loadInfo, closeCamera, drawFaces, labelFont, csvCell, download.
"use strict";

const LIVE = {
  maxSide: 640, // frames are sent at most this many pixels wide/high (the detector looks at 640 px anyway)
  quality: 0.8, // JPEG quality
  maxUnanswered: 2, // one being scored + one waiting on the server
  minIntervalMs: 50, // at most 20 frames per second, however fast the server is
  windowS: 60, // timelines show the last minute
  chartEveryMs: 250, // timelines are redrawn at most 4 times a second
  goneAfterS: 3, // a track unseen this long is greyed out (and dropped after the window)
};
const EMOTION_LINES = ["#E69F00", "#009E73", "#CC79A7"]; // Okabe-Ito: readable for colour-blind people too
const DIMENSION_LINES = ["#0072B2", "#D55E00", "#56B4E9", "#000000"];

const live = {
  ws: null, camera: null, timer: null, grab: null, sent: 0, answered: -1, lastSent: 0, pending: new Map(),
  encoding: false, stopping: false, tracks: new Map(), now: 0, csv: { columns: null, lines: [] }, answers: [],
  lastDraw: 0, lastError: "",
};
state.live = live;

function keySubprotocol(key) {
  // browsers cannot set headers on a WebSocket: the key travels as the subprotocol bearer.<base64url(key)>
  let binary = "";
  new TextEncoder().encode(key).forEach((b) => { binary += String.fromCharCode(b); });
  return `bearer.${btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}`;
}

async function startLive() {
  if (live.ws) return;
  showError("");
  if (!navigator.mediaDevices?.getUserMedia) {
    showError("This browser cannot use a camera here (a camera needs https or http://localhost).");
    return;
  }
  if (!state.info) await loadInfo();
  if (!state.info) {
    showError("The server is not ready (see the line under the title); try Live again in a moment.");
    return;
  }
  let camera;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
  } catch (err) {
    showError(`The camera could not be opened (${err.name}: ${err.message}). Allow camera access and try again.`);
    return;
  }
  closeCamera(); // the snapshot camera, if it was open
  Object.assign(live, {
    camera, sent: 0, answered: -1, lastSent: 0, pending: new Map(), encoding: false, stopping: false,
    tracks: new Map(), now: 0, csv: { columns: null, lines: [] }, answers: [], lastDraw: 0, lastError: "",
  });
  $("timelines").replaceChildren();
  $("live-csv").disabled = true;
  $("live-video").srcObject = camera;
  $("live").hidden = false;
  document.querySelector(".live-stage").hidden = false;
  $("live-button").textContent = "Stop live";
  liveStatus("connecting…");

  const protocols = ["emonet-face"];
  const key = $("api-key").value.trim();
  if (key) protocols.push(keySubprotocol(key));
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ faces: $("faces").value });
  const ws = new WebSocket(`${scheme}//${location.host}/v1/stream?${query}`, protocols);
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  ws.onopen = () => {
    live.timer = setInterval(pump, 20);
    liveStatus("connected; waiting for the first answer…");
  };
  ws.onmessage = (event) => onAnswer(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (live.ws !== ws) return;
    const expected = live.stopping;
    stopLive();
    if (expected) return;
    const reason = event.reason || (event.code === 1006 ? "the connection was lost; is the server still running?" : `code ${event.code}`);
    showError(`The live stream was closed by the server: ${reason}`);
    if (event.code === 1008 && /API key/.test(reason)) $("key-label").hidden = false;
  };
}

function stopLive() {
  live.stopping = true;
  clearInterval(live.timer);
  live.timer = null;
  if (live.ws && live.ws.readyState <= WebSocket.OPEN) live.ws.close(1000, "stopped");
  live.ws = null;
  if (live.camera) live.camera.getTracks().forEach((t) => t.stop());
  live.camera = null;
  $("live-video").srcObject = null;
  document.querySelector(".live-stage").hidden = true;
  $("live-button").textContent = "Live";
  drawTimelines();
  liveStatus(`stopped · ${live.csv.lines.length} rows recorded`);
}

function pump() {
  // send the camera's current picture when fewer than maxUnanswered frames are unanswered
  const ws = live.ws, video = $("live-video");
  if (!ws || ws.readyState !== WebSocket.OPEN || live.encoding || !video.videoWidth) return;
  if (live.sent - 1 - live.answered >= LIVE.maxUnanswered) return;
  const now = performance.now();
  if (now - live.lastSent < LIVE.minIntervalMs) return;
  const scale = Math.min(1, LIVE.maxSide / Math.max(video.videoWidth, video.videoHeight));
  const canvas = live.grab || (live.grab = document.createElement("canvas"));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  live.encoding = true;
  live.lastSent = now;
  canvas.toBlob(async (blob) => {
    try {
      if (!blob || live.ws !== ws) return;
      const data = await blob.arrayBuffer();
      if (live.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      live.pending.set(live.sent, { scale, at: performance.now() });
      live.sent += 1; // the server numbers frames in the order they arrive: the same count
      ws.send(data);
    } finally {
      live.encoding = false;
    }
  }, "image/jpeg", LIVE.quality);
}

function onAnswer(message) {
  const sent = live.pending.get(message.frame);
  for (const n of live.pending.keys()) if (n <= message.frame) live.pending.delete(n); // older ones were skipped
  live.answered = Math.max(live.answered, message.frame);
  const now = performance.now();
  live.answers.push({ at: now, latency: sent ? now - sent.at : NaN });
  while (live.answers.length > 2 && now - live.answers[0].at > 5000) live.answers.shift();
  if (message.error) {
    live.lastError = message.error; // one bad frame: shown, and the stream goes on
  } else {
    live.lastError = "";
    record(message.rows);
    drawOverlay(message.rows, sent ? sent.scale : 1);
    addPoints(message.rows);
    if (now - live.lastDraw >= LIVE.chartEveryMs) {
      drawTimelines();
      live.lastDraw = now;
    }
  }
  liveStatus();
}

function liveStatus(text) {
  if (text === undefined) {
    const a = live.answers;
    const rate = a.length > 1 ? ((a.length - 1) * 1000) / (a[a.length - 1].at - a[0].at) : 0;
    const latencies = a.map((x) => x.latency).filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
    const p50 = latencies.length ? latencies[Math.floor(latencies.length / 2)] : NaN;
    text = `live · ${rate.toFixed(1)} frames/s answered · latency ${Number.isNaN(p50) ? "–" : Math.round(p50)} ms · ` +
      `frame ${live.answered} · ${live.csv.lines.length} rows` + (live.lastError ? ` · ${live.lastError}` : "");
  }
  $("live-status").textContent = text;
}

// --- rows: CSV, overlay ---------------------------------------------------------------------------
function record(rows) {
  for (const row of rows) {
    if (!live.csv.columns) live.csv.columns = Object.keys(row); // every row of a stream has the same columns
    live.csv.lines.push(live.csv.columns.map((c) => csvCell(row[c])).join(","));
  }
  $("live-csv").disabled = !live.csv.lines.length;
}

function drawOverlay(rows, scale) {
  const video = $("live-video"), canvas = $("live-overlay");
  if (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight) {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
  }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  // a person is labelled by the rows' `track` column, named as such (the timelines' "Track N"): a
  // face's number (`face`) changes from frame to frame as people move, its track does not
  const faces = rows.filter((r) => r.top1).map((row) => ({ row, label: row.track != null ? `track ${row.track}` : "" }));
  canvas.labels = drawFaces(ctx, faces, 1 / scale, labelFont(canvas.width, canvas.clientWidth || canvas.width));
}

// --- per-track timelines ----------------------------------------------------------------------------
function addPoints(rows) {
  const { emotions, dimensions } = state.info;
  for (const row of rows) {
    if (!row.top1 || row.time == null) continue;
    const id = row.track ?? "all"; // faces=none: one timeline for the whole picture
    let track = live.tracks.get(id);
    if (!track) live.tracks.set(id, (track = { id, points: [], el: null }));
    track.points.push({
      t: row.time,
      p: Object.fromEntries(emotions.map((e) => [e.key, row[`prob.${e.key}`] ?? 0])),
      d: Object.fromEntries(dimensions.map((d) => [d.key, row[`raw.${d.key}`]])),
    });
    live.now = Math.max(live.now, row.time);
  }
}

function drawTimelines() {
  const info = state.info;
  if (!info) return;
  const now = live.now;
  for (const [id, track] of live.tracks) {
    track.points = track.points.filter((p) => p.t >= now - LIVE.windowS);
    if (!track.points.length) { // unseen for a whole minute: gone
      track.el?.remove();
      live.tracks.delete(id);
      continue;
    }
    if (!track.el) {
      track.el = Object.assign(document.createElement("div"), { className: "track" });
      track.el.dataset.track = id;
      $("timelines").append(track.el);
    }
    renderTrack(track, now);
  }
}

function renderTrack(track, now) {
  const info = state.info, pts = track.points;
  // the time axis grows with the track up to the whole window (a new track does not start as a sliver)
  const span = Math.min(LIVE.windowS, Math.max(10, now - pts[0].t)), from = now - span;
  const mean = (key) => pts.reduce((s, p) => s + (p.p[key] || 0), 0) / pts.length;
  const top = info.emotions.map((e) => ({ e, m: mean(e.key) })).sort((a, b) => b.m - a.m).slice(0, 3);
  const W = 380, left = 34, right = W - 6, emoTop = 8, emoH = 80, dimTop = emoTop + emoH + 16, dimH = 56;
  const x = (t) => left + ((t - from) / span) * (right - left);
  const maxP = Math.max(0.05, ...top.flatMap(({ e }) => pts.map((p) => p.p[e.key] || 0)));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${dimTop + dimH + 16}`, role: "img", class: "timeline",
                             "aria-label": `track ${track.id}: emotions and dimensions over the last minute` });
  for (const [y0, h] of [[emoTop, emoH], [dimTop, dimH]]) {
    chart.append(svg("rect", { x: left, y: y0, width: right - left, height: h, fill: "#fafbfc", stroke: "#d8dce4" }));
  }
  chart.append(svg("text", { x: left - 3, y: emoTop + 8, "font-size": 9, "text-anchor": "end", fill: "#777" }, percent(maxP)));
  chart.append(svg("text", { x: left - 3, y: emoTop + emoH, "font-size": 9, "text-anchor": "end", fill: "#777" }, "0"));
  chart.append(svg("text", { x: left - 3, y: dimTop + 8, "font-size": 9, "text-anchor": "end", fill: "#777" }, "high"));
  chart.append(svg("text", { x: left - 3, y: dimTop + dimH, "font-size": 9, "text-anchor": "end", fill: "#777" }, "low"));
  chart.append(svg("text", { x: left, y: dimTop + dimH + 12, "font-size": 9, fill: "#777" }, `−${Math.round(span)} s`));
  chart.append(svg("text", { x: right, y: dimTop + dimH + 12, "font-size": 9, fill: "#777", "text-anchor": "end" }, "now"));
  const line = (values, y0, h, colour, attrs) => svg("polyline", {
    points: pts.map((p, i) => `${x(p.t).toFixed(1)},${(y0 + (1 - values[i]) * h).toFixed(1)}`).join(" "),
    fill: "none", stroke: colour, "stroke-width": 1.8, "stroke-linejoin": "round", ...attrs });
  top.forEach(({ e }, k) => {
    const values = pts.map((p) => Math.min(1, (p.p[e.key] || 0) / maxP));
    chart.append(line(values, emoTop, emoH, EMOTION_LINES[k], { class: "emotion", "data-key": e.key }));
  });
  info.dimensions.forEach((d, k) => {
    const values = pts.map((p) => (p.d[d.key] == null ? 0.5 : Math.min(1, Math.max(0, (p.d[d.key] - d.low) / (d.high - d.low)))));
    chart.append(line(values, dimTop, dimH, DIMENSION_LINES[k], { class: "dimension", "data-key": d.key, "stroke-dasharray": "4 2" }));
  });
  const last = pts[pts.length - 1];
  const title = Object.assign(document.createElement("h4"), {
    textContent: `${track.id === "all" ? "Whole picture" : `Track ${track.id}`} · ${pts.length} frames in the last minute`,
  });
  const keys = document.createElement("div");
  keys.className = "keys";
  top.forEach(({ e }, k) => keys.append(legendKey(EMOTION_LINES[k], "solid", `${e.name} ${percent(last.p[e.key] || 0)}`)));
  info.dimensions.forEach((d, k) => {
    const v = last.d[d.key];
    keys.append(legendKey(DIMENSION_LINES[k], "dashed", `${d.name} ${v == null ? "n/a" : v.toFixed(2)}`));
  });
  track.el.classList.toggle("gone", now - last.t > LIVE.goneAfterS);
  track.el.replaceChildren(title, chart, keys);
}

function legendKey(colour, dash, text) {
  const span = document.createElement("span");
  span.style.setProperty("--c", colour);
  span.style.setProperty("--dash", dash);
  span.textContent = text;
  return span;
}

// --- controls -------------------------------------------------------------------------------------------
$("live-button").addEventListener("click", () => (live.ws ? stopLive() : startLive()));
$("live-stop").addEventListener("click", stopLive);
$("live-csv").addEventListener("click", () => {
  if (!live.csv.columns) return;
  const lines = [live.csv.columns.map(csvCell).join(","), ...live.csv.lines];
  download("emonet-face-live.csv", "text/csv", lines.join("\n") + "\n");
});
