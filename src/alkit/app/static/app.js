"use strict";
// The labeling page: lease images, label with clicks or keys, poll model status.
const params = new URLSearchParams(location.search);
const token = params.get("token") || sessionStorage.getItem("alkit_token");
if (token) sessionStorage.setItem("alkit_token", token);
let annotator = params.get("annotator") || localStorage.getItem("alkit_annotator");
if (!annotator) { annotator = "annotator-" + Math.random().toString(36).slice(2, 8); }
localStorage.setItem("alkit_annotator", annotator);

let classes = [];
let queue = [];
let modelVersion = null;
let busy = false;

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers["X-Alkit-Token"] = token;
  const res = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return res.json();
}

function imgUrl(item) {
  const encoded = item.path.split("/").map(encodeURIComponent).join("/");
  return "/img/" + encoded + (token ? "?token=" + encodeURIComponent(token) : "");
}

function say(text) { document.getElementById("message").textContent = text; }

async function refill(refresh) {
  const keep = queue.length ? [queue[0].image_id] : [];
  if (!refresh && queue.length >= 4) return;
  const res = await api("POST", "/api/lease", { annotator, n: 8, refresh: !!refresh, keep });
  const have = new Set(queue.map(i => i.image_id));
  if (refresh) queue = queue.slice(0, 1);
  for (const item of res.items) if (!have.has(item.image_id) || refresh) {
    if (!queue.some(q => q.image_id === item.image_id)) queue.push(item);
  }
  render();
}

function render() {
  const img = document.getElementById("current");
  const empty = document.getElementById("empty");
  if (queue.length) {
    img.hidden = false; empty.hidden = true;
    img.src = imgUrl(queue[0]);
    img.dataset.imageId = queue[0].image_id;
    document.getElementById("current-path").textContent = queue[0].path;
  } else {
    img.hidden = true; empty.hidden = false;
    img.dataset.imageId = "";
    document.getElementById("current-path").textContent = "";
  }
  const thumbs = document.getElementById("thumbs");
  thumbs.replaceChildren(...queue.slice(1, 6).map(item => {
    const t = document.createElement("img");
    t.src = imgUrl(item); t.alt = item.path; t.dataset.imageId = item.image_id;
    return t;
  }));
}

async function label(k) {
  if (busy || !queue.length || k >= classes.length) return;
  busy = true;
  const item = queue[0];
  try {
    const res = await api("POST", "/api/label", { annotator, image_id: item.image_id, label: classes[k], lease_id: item.lease_id });
    queue.shift();
    say(`saved: ${item.path} → ${classes[k]} (${res.labeled} labeled)`);
    render();
    await refill(false);
    await poll();
  } catch (e) { say("not saved: " + e.message); }
  busy = false;
}

async function skip() {
  if (busy || !queue.length) return;
  busy = true;
  const item = queue.shift();
  try { await api("POST", "/api/skip", { annotator, image_id: item.image_id }); say("skipped " + item.path); }
  catch (e) { queue.unshift(item); say("skip failed: " + e.message); }
  render(); await refill(false); busy = false;
}

async function undo() {
  if (busy) return;
  busy = true;
  try {
    const res = await api("POST", "/api/undo", { annotator });
    if (res.item) {
      queue = [res.item, ...queue.filter(i => i.image_id !== res.item.image_id)];
      say("undone: " + res.item.path); render(); await poll();
    } else say("nothing to undo");
  } catch (e) { say("undo failed: " + e.message); }
  busy = false;
}

function drawCurve(points) {
  const svg = document.getElementById("curve");
  const W = 260, H = 140, P = 28;
  const pts = points.filter(p => p.f1_macro !== undefined);
  let html = `<rect x="0" y="0" width="${W}" height="${H}" fill="#fff" stroke="#ddd"/>`;
  html += `<text x="4" y="12" font-size="10">held-out macro F1 vs training labels</text>`;
  if (pts.length) {
    const maxN = Math.max(...pts.map(p => p.n_train), 1);
    const x = n => P + (W - P - 8) * n / maxN, y = v => H - 18 - (H - 40) * v;
    html += `<polyline fill="none" stroke="#36c" stroke-width="2" points="${pts.map(p => `${x(p.n_train)},${y(p.f1_macro)}`).join(" ")}"/>`;
    html += pts.map(p => `<circle cx="${x(p.n_train)}" cy="${y(p.f1_macro)}" r="3" fill="#36c"/>`).join("");
    html += `<text x="${P}" y="${H - 4}" font-size="10">0</text><text x="${W - 8}" y="${H - 4}" font-size="10" text-anchor="end">${maxN} labels</text>`;
    html += `<text x="2" y="${y(1) + 4}" font-size="10">1.0</text><text x="2" y="${y(0)}" font-size="10">0</text>`;
  }
  svg.innerHTML = html;
}

async function poll() {
  let s;
  try { s = await api("GET", "/api/state"); } catch (e) { say("server unreachable: " + e.message); return; }
  if (!classes.length) {
    classes = s.classes;
    const box = document.getElementById("class-buttons");
    box.replaceChildren(...classes.map((c, k) => {
      const b = document.createElement("button");
      b.innerHTML = (k < 10 ? `<kbd>${(k + 1) % 10}</kbd> ` : "");
      b.append(c);
      b.dataset.label = c;
      b.addEventListener("click", () => label(k));
      return b;
    }));
  }
  document.getElementById("labeled-count").textContent = s.labeled;
  document.getElementById("total").textContent = s.images;
  document.getElementById("budget").textContent = s.budget ? ` · budget ${s.labeled} / ${s.budget}` : "";
  const max = Math.max(1, ...Object.values(s.counts));
  document.getElementById("counts").replaceChildren(...Object.entries(s.counts).map(([c, n]) => {
    const row = document.createElement("div"); row.className = "count-row";
    row.innerHTML = `<span class="name"></span><span class="bar" style="width:${150 * n / max}px"></span><span class="n">${n}</span>`;
    row.querySelector(".name").textContent = c;
    return row;
  }));
  const m = s.model, status = document.getElementById("model-status");
  status.classList.toggle("training", m.training);
  status.dataset.version = m.version;
  let text = m.version ? `model v${m.version} (${m.strategy})` : `cold start: random order (training starts at ${m.min_labels} labels)`;
  if (m.training) text += " · a newer model is training…";
  else if (m.version) text += ` · retrains in ${m.labels_until_retrain} labels`;
  if (m.error) text += " · last training failed: " + m.error;
  status.textContent = text;
  const latest = m.latest;
  document.getElementById("model-quality").textContent = latest && latest.metrics.n_holdout
    ? `held-out accuracy ${latest.metrics.accuracy.toFixed(3)}, macro F1 ${latest.metrics.f1_macro.toFixed(3)} on ${latest.metrics.n_holdout} images`
    : (latest ? "no held-out labels yet" : "");
  drawCurve(m.curve);
  if (modelVersion !== null && m.version !== modelVersion) {
    await refill(true);
    say(`model v${m.version} ready: queue re-ranked`);
    document.body.dataset.reranked = m.version;
  }
  modelVersion = m.version;
}

document.addEventListener("keydown", ev => {
  if (ev.target.tagName === "INPUT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key >= "1" && ev.key <= "9") label(Number(ev.key) - 1);
  else if (ev.key === "0") label(9);
  else if (ev.key === "s") skip();
  else if (ev.key === "u") undo();
  else if (ev.key === "?") document.getElementById("help").hidden ^= true;
});
document.getElementById("skip").addEventListener("click", skip);
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("help-button").addEventListener("click", () => document.getElementById("help").hidden ^= true);
if (token) document.getElementById("export").href = "/api/export.csv?token=" + encodeURIComponent(token);

(async () => { await poll(); await refill(false); setInterval(poll, 1500); })();
