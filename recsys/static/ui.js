// The /ui page: look up an item, see its image and its neighbours' images, scores and reasons, and
// switch between visual, behaviour and hybrid; narrow answers with a filter, group_by and diversity;
// a user's recommendations; a session built by clicking + and - on results (POST /v1/recommend);
// a link to the serving version's catalogue health report.
// Plain JavaScript against the JSON API; no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const itemPath = (id) => "/v1/items/" + encodeURIComponent(id);

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

const HIDDEN = ["item_id", "score", "why", "because", "source"];
const session = { positive: [], negative: [] };

function reasons(item) {
  // "visual 0.812 · behaviour 0.100 · rule: X · because a, b"
  const parts = Object.entries((item.why && item.why.sources) || {})
    .map(([name, part]) => name + " " + Number(part).toFixed(3));
  if (item.why && item.why.rule) parts.push("rule: " + item.why.rule);
  if (item.because && item.because.length) parts.push("because " + item.because.join(", "));
  return parts.join(" · ");
}

function card(item, score) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  const img = document.createElement("img");
  img.src = itemPath(item.item_id) + "/image";
  img.alt = item.item_id;
  img.loading = "lazy";
  const id = document.createElement("div");
  id.className = "id";
  id.textContent = item.item_id;
  div.append(img, id);
  if (score !== undefined) {
    const s = document.createElement("div");
    s.className = "score";
    s.textContent = "score " + Number(score).toFixed(3);
    div.append(s);
  }
  if (item.why) {
    const why = document.createElement("div");
    why.className = "why";
    why.textContent = reasons(item);
    div.append(why);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = Object.entries(item)
    .filter(([k]) => !HIDDEN.includes(k))
    .map(([k, v]) => k + ": " + v).join(" · ");
  div.append(meta);
  return div;
}

function shopOptions() {
  // The filter, group_by and diversity controls as request fields; throws on a filter that is not JSON.
  const options = {};
  const filter = $("#filter").value.trim();
  if (filter) {
    try { options.filter = JSON.parse(filter); } catch (err) { throw new Error("filter: not valid JSON"); }
  }
  const groupBy = $("#group-by").value.trim();
  if (groupBy) options.group_by = groupBy;
  const diversity = Number($("#diversity").value || 0);
  if (diversity > 0) options.diversity = diversity;
  return options;
}

function shopQuery() {
  return Object.entries(shopOptions()).map(([name, value]) =>
    "&" + name + "=" + encodeURIComponent(typeof value === "object" ? JSON.stringify(value) : value)).join("");
}

function currentMode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function showSession() {
  $("#positives").textContent = session.positive.join(", ") || "none";
  $("#negatives").textContent = session.negative.join(", ") || "none";
}

function addToSession(list, itemId) {
  const other = list === "positive" ? "negative" : "positive";
  session[other] = session[other].filter((id) => id !== itemId);
  if (!session[list].includes(itemId)) session[list].push(itemId);
  showSession();
}

async function recommendForSession() {
  if (!session.positive.length) { setStatus("add an item with + first", true); return; }
  setStatus("recommending for the session ...");
  try {
    const body = { positive: session.positive, negative: session.negative, k: Number($("#k").value || 10),
                   mode: currentMode(), ...shopOptions() };
    const answer = await getJSON("/v1/recommend", { method: "POST", body: JSON.stringify(body),
                                                    headers: { "Content-Type": "application/json" } });
    $("#query").replaceChildren();
    showResults(answer.results);
    let text = answer.results.length + " items for the session (" + answer.mode + ")";
    if (answer.unknown.length) text += "; unknown: " + answer.unknown.join(", ");
    setStatus(text, false);
  } catch (err) {
    $("#results").replaceChildren();
    setStatus(err.message, true);
  }
}

async function recommendForUser(userId) {
  setStatus("recommending for " + userId + " ...");
  try {
    const answer = await getJSON("/v1/users/" + encodeURIComponent(userId) + "/recommendations?k="
                                 + encodeURIComponent($("#k").value || 10) + shopQuery());
    $("#query").replaceChildren();
    showResults(answer.results);
    const who = answer.known_user === false ? " (unknown user: popular items)" : "";
    setStatus(answer.results.length + " items for " + userId + who, false);
  } catch (err) {
    $("#results").replaceChildren();
    setStatus(err.message, true);
  }
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || ("HTTP " + response.status));
  return body;
}

function showResults(results) {
  const grid = $("#results");
  grid.replaceChildren(...results.map((r) => {
    const c = card(r, r.score);
    c.addEventListener("click", () => lookup(r.item_id));
    for (const [list, label, title] of [["positive", "+", "more like this"], ["negative", "\u2212", "less like this"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "add-" + list;
      button.textContent = label;
      button.title = title;
      button.addEventListener("click", (event) => { event.stopPropagation(); addToSession(list, r.item_id); });
      c.append(button);
    }
    return c;
  }));
}

let lookups = 0;  // a newer lookup makes an older one's late answers stale

async function lookup(itemId) {
  const seq = ++lookups;
  $("#item-id").value = itemId;
  const mode = currentMode();
  const k = $("#k").value || 10;
  setStatus("looking up " + itemId + " ...");
  try {
    const [item, answer] = await Promise.all([
      getJSON(itemPath(itemId)),
      getJSON(itemPath(itemId) + "/similar?k=" + encodeURIComponent(k) + "&mode=" + mode + shopQuery()),
    ]);
    if (seq !== lookups) return;
    $("#query").replaceChildren(card(item));
    showResults(answer.results);
    await compareModes(itemId, k, seq);
    if (seq !== lookups) return;
    $("#version").textContent = "version " + answer.version;
    let text = answer.results.length + " similar items (" + answer.mode + ")";
    if (answer.note) text += ": " + answer.note;
    setStatus(text, false);
    history.replaceState(null, "", "?item=" + encodeURIComponent(itemId) + "&mode=" + mode);
  } catch (err) {
    if (seq !== lookups) return;
    $("#query").replaceChildren();
    $("#results").replaceChildren();
    setStatus(err.message, true);
  }
}

async function compareModes(itemId, k, seq) {
  // With "modes side by side": one column per mode, each the API's answer under the same controls.
  const columns = $("#columns");
  if (!$("#compare").checked) { columns.replaceChildren(); columns.dataset.itemId = ""; return; }
  const modes = ["visual", "behaviour", "hybrid"];
  const answers = await Promise.all(modes.map((mode) => getJSON(
    itemPath(itemId) + "/similar?k=" + encodeURIComponent(k) + "&mode=" + mode + shopQuery())));
  if (seq !== lookups) return;
  columns.replaceChildren(...modes.map((mode, n) => {
    const column = document.createElement("div");
    column.className = "column";
    column.dataset.mode = mode;
    const title = document.createElement("h3");
    title.textContent = mode + (answers[n].mode !== mode ? " (answered " + answers[n].mode + ")" : "");
    column.append(title, ...answers[n].results.map((r) => {
      const c = card(r, r.score);
      c.addEventListener("click", () => lookup(r.item_id));
      return c;
    }));
    return column;
  }));
  columns.dataset.itemId = itemId;
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  setStatus("embedding the image ...");
  try {
    const answer = await getJSON("/v1/similar/image?k=" + ($("#k").value || 10) + shopQuery(),
                                 { method: "POST", body: form });
    $("#query").replaceChildren();
    showResults(answer.results);
    setStatus(answer.results.length + " items like the uploaded image", false);
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function samples() {
  try {
    const page = await getJSON("/v1/items?limit=12");
    $("#version").textContent = "version " + page.version + " · " + page.total + " items";
    $("#samples").replaceChildren(...page.items.map((item) => {
      const c = card(item);
      c.addEventListener("click", () => lookup(item.item_id));
      return c;
    }));
  } catch (err) {
    setStatus(err.message, true);
  }
}

$("#lookup").addEventListener("submit", (event) => {
  event.preventDefault();
  lookup($("#item-id").value.trim());
});
document.querySelectorAll('input[name="mode"]').forEach((radio) =>
  radio.addEventListener("change", () => { if ($("#item-id").value.trim()) lookup($("#item-id").value.trim()); }));
$("#shop").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("#item-id").value.trim()) lookup($("#item-id").value.trim());
});
$("#user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  recommendForUser($("#user-id").value.trim());
});
$("#session-go").addEventListener("click", recommendForSession);
$("#compare").addEventListener("change", () => { if ($("#item-id").value.trim()) lookup($("#item-id").value.trim()); });
$("#session-clear").addEventListener("click", () => { session.positive = []; session.negative = []; showSession(); });
$("#upload").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("#upload-file").files[0];
  if (file) upload(file);
});

async function healthReport() {
  // The serving version's catalogue health report, linked with its counts when there is one.
  const response = await fetch("/v1/health/summary").catch(() => null);
  if (!response || !response.ok) return;
  const s = await response.json();
  const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
  const parts = [plural(s.duplicate_groups, "duplicate group"), plural(s.placeholders, "placeholder")];
  if (s.failures !== null) parts.push(plural(s.failures, "failed image"));
  const link = $("#health-report");
  link.href = s.report;
  link.textContent = "catalogue health: " + parts.join(" · ");
  link.title = "health report on version " + s.version;
  link.hidden = false;
}

const params = new URLSearchParams(location.search);
if (params.get("mode")) {
  const radio = document.querySelector('input[name="mode"][value="' + params.get("mode") + '"]');
  if (radio) radio.checked = true;
}
showSession();
samples();
healthReport();
if (params.get("item")) lookup(params.get("item"));
