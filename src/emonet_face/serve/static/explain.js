// Explanation maps on the page: click an emotion (its bar or its name) in a face's chart and the
// picture is sent to /v1/explain for that face and emotion; the map comes back over the encoder's
// patch grid of the face crop and is drawn over the crop under the chart, and over the face in the
// photo (a see-through layer on the picture, one map per face, shown or hidden with the card's
// "on the photo" box), red where a patch raises the emotion's centred score, blue where it lowers
// it, with the colour scale. Self-contained: it registers itself on app.js's hooks.faceCard (loaded
// after app.js) and uses its globals state, authHeaders, percent and faceNumber.
"use strict";

window.emonetExplain = (() => {
  const HINT = "Click an emotion above to see which parts of this face raise (red) or lower (blue) its score.";
  const SIZE = 240;

  // RdBu_r (as the CLI's pictures): blue (-1) → white (0) → red (+1)
  const STOPS = [[-1, [5, 48, 97]], [-0.5, [67, 147, 195]], [0, [247, 247, 247]], [0.5, [214, 96, 77]], [1, [103, 0, 31]]];
  function colour(v) {
    const x = Math.max(-1, Math.min(1, v));
    for (let i = 1; i < STOPS.length; i++) {
      const [x1, c1] = STOPS[i];
      const [x0, c0] = STOPS[i - 1];
      if (x <= x1) {
        const t = (x - x0) / (x1 - x0);
        return c0.map((c, k) => Math.round(c + t * (c1[k] - c)));
      }
    }
    return STOPS[STOPS.length - 1][1];
  }

  function emotionName(key) {
    return (typeof state !== "undefined" && state.emotion?.[key]?.name) || key;
  }

  async function fetchMap(picture, row, key) {
    const form = new FormData();
    form.append("file", picture.file, picture.name);
    // the same crop /v1/predict scored: no face columns means the whole picture (faces=none)
    const query = new URLSearchParams({ emotions: key, faces: row.region == null ? "none" : "auto" });
    if (row.face != null) query.set("face", String(row.face));
    const response = await fetch(`/v1/explain?${query}`, { method: "POST", body: form, headers: authHeaders() });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).error || detail;
      } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
    const { rows } = await response.json();
    const found = rows.find((r) => r.emotion === key && r.saliency);
    if (!found) throw new Error("no map came back for this face");
    return found;
  }

  function drawMap(bitmap, map) {
    const { cx, cy, width, height, angle } = map.crop || {};
    const w = SIZE;
    const h = width && height ? Math.round((SIZE * height) / width) : SIZE;
    const canvas = Object.assign(document.createElement("canvas"), { width: w, height: h, className: "explain-map" });
    const ctx = canvas.getContext("2d");
    if (bitmap && width) {
      // the crop as the encoder saw it: the picture turned by -angle (PIL's counter-clockwise turn)
      ctx.save();
      ctx.translate(w / 2, h / 2);
      ctx.scale(w / width, h / height);
      ctx.rotate((-(angle || 0) * Math.PI) / 180);
      ctx.drawImage(bitmap, -cx, -cy);
      ctx.restore();
    } else {
      ctx.fillStyle = "#ddd";
      ctx.fillRect(0, 0, w, h);
    }
    paintCells(ctx, map, 0, 0, w, h, (a) => 0.15 + 0.65 * a);
    return { canvas, limit: Math.max(1e-9, ...map.saliency.map(Math.abs)) };
  }

  function paintCells(ctx, map, x0, y0, w, h, alpha) {
    // the map's patches over the rectangle (x0, y0, w, h), each cell's opacity alpha(|value| / limit)
    const limit = Math.max(1e-9, ...map.saliency.map(Math.abs));
    const cw = w / map.grid_cols;
    const ch = h / map.grid_rows;
    map.saliency.forEach((value, i) => {
      const [red, green, blue] = colour(value / limit);
      ctx.fillStyle = `rgba(${red}, ${green}, ${blue}, ${alpha(Math.min(1, Math.abs(value) / limit))})`;
      ctx.fillRect(x0 + (i % map.grid_cols) * cw, y0 + Math.floor(i / map.grid_cols) * ch, cw, ch);
    });
  }

  function photoLayer(picture) {
    // the see-through canvas over the picture (made once per picture, as large as its canvas)
    if (!picture.layer) {
      const { canvas } = picture;
      picture.layer = Object.assign(document.createElement("canvas"), {
        width: canvas.width, height: canvas.height, className: "explain-layer" });
      picture.layer.setAttribute("aria-hidden", "true");
      picture.maps = new Map();
      canvas.parentElement.append(picture.layer);
    }
    return picture.layer;
  }

  function drawLayer(picture) {
    // every face's shown map, each inside its crop: the crop's centre, size and turn in the picture
    const layer = photoLayer(picture);
    const ctx = layer.getContext("2d");
    ctx.clearRect(0, 0, layer.width, layer.height);
    for (const { map, shown } of picture.maps.values()) {
      const { cx, cy, width, height, angle } = map.crop;
      if (!shown) continue;
      ctx.save();
      ctx.translate(cx * picture.scale, cy * picture.scale);
      ctx.scale(picture.scale, picture.scale);
      ctx.rotate(((angle || 0) * Math.PI) / 180); // back from the crop (turned by -angle) to the picture
      paintCells(ctx, map, -width / 2, -height / 2, width, height, (a) => 0.65 * a);
      ctx.restore();
    }
    layer.hidden = ![...picture.maps.values()].some((m) => m.shown);
  }

  function onPhoto(picture, row, map) {
    // the map over the face in the photo, with a box that shows or hides it; null without a picture
    if (!picture.canvas || !map.crop?.width) return null;
    photoLayer(picture);
    const face = String(row.face ?? "whole");
    picture.maps.set(face, { map, shown: picture.maps.get(face)?.shown ?? true });
    drawLayer(picture);
    const toggle = Object.assign(document.createElement("input"), {
      type: "checkbox", checked: picture.maps.get(face).shown, className: "on-photo" });
    toggle.addEventListener("change", () => {
      picture.maps.get(face).shown = toggle.checked;
      drawLayer(picture);
    });
    const label = Object.assign(document.createElement("label"), { className: "explain-toggle" });
    label.append(toggle, " on the photo");
    return label;
  }

  function caption(row, key, map) {
    // both numbers named: the centred score the map explains and the probability the bar shows
    const number = faceNumber(row);
    const p = row[`prob.${key}`];
    const probability = p == null ? "" : ` · probability ${percent(p)}`;
    return `${number != null ? `Face ${number} · ` : ""}${emotionName(key)}: centred score ` +
      `${map.score >= 0 ? "+" : ""}${map.score.toFixed(2)}${probability} · ${map.method} · ` +
      `${map.grid_rows}×${map.grid_cols} patches of the crop the model saw. ` +
      "A map shows what moves this model's score, not why a person feels anything.";
  }

  function scale(limit) {
    const bar = document.createElement("div");
    bar.className = "explain-scale";
    const gradient = STOPS.map(([x, c]) => `rgb(${c.join(",")}) ${((x + 1) / 2) * 100}%`).join(", ");
    bar.innerHTML =
      `<span>−${limit.toPrecision(2)}</span><i style="background: linear-gradient(to right, ${gradient})"></i>` +
      `<span>+${limit.toPrecision(2)}</span>`;
    bar.title = "effect on the emotion's centred score: red raises it, blue lowers it";
    return bar;
  }

  async function show(panel, picture, row, key) {
    const token = Symbol(key);
    panel.token = token;
    panel.replaceChildren(Object.assign(document.createElement("p"), {
      className: "muted", textContent: `Computing the map for ${emotionName(key)}… (seconds on a CPU)` }));
    let map;
    try {
      map = await fetchMap(picture, row, key);
    } catch (err) {
      if (panel.token !== token) return;
      panel.replaceChildren(Object.assign(document.createElement("p"), {
        className: "row-error", textContent: `No map for ${emotionName(key)}: ${err.message}` }));
      return;
    }
    if (panel.token !== token) return; // another emotion was clicked meanwhile
    const { canvas, limit } = drawMap(picture.bitmap, map);
    const text = Object.assign(document.createElement("p"), { className: "muted explain-caption",
                                                              textContent: caption(row, key, map) });
    panel.dataset.emotion = key;
    panel.replaceChildren(...[canvas, scale(limit), onPhoto(picture, row, map), text].filter(Boolean));
  }

  // Make the emotions (bars and names) in `card`'s chart clickable; still pictures only: /v1/explain
  // takes one still picture.
  function attach(card, row, picture) {
    if (row.frame != null || !picture?.file) return;
    const chart = card.querySelector("svg.chart");
    if (!chart) return;
    const panel = Object.assign(document.createElement("div"), { className: "explain" });
    panel.append(Object.assign(document.createElement("p"), { className: "muted", textContent: HINT }));
    card.append(panel);
    chart.classList.add("explainable");
    chart.querySelectorAll("rect.bar[data-key]").forEach((bar) => {
      const label = bar.previousElementSibling; // app.js draws each emotion's name, then its bar
      if (label?.tagName === "text") label.setAttribute("data-key", bar.getAttribute("data-key"));
    });
    chart.addEventListener("click", (event) => {
      const key = event.target.closest?.("[data-key]")?.getAttribute("data-key");
      if (key) show(panel, picture, row, key);
    });
  }

  if (typeof hooks !== "undefined") hooks.faceCard.push(attach);
  return { attach, colour };
})();
