// The /ui page: look up an item, see its image and its neighbours' images and scores, and switch
// between visual, behaviour and hybrid. Plain JavaScript against the JSON API; no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const itemPath = (id) => "/v1/items/" + encodeURIComponent(id);

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
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
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = Object.entries(item)
    .filter(([k]) => !["item_id", "score"].includes(k))
    .map(([k, v]) => k + ": " + v).join(" · ");
  div.append(meta);
  return div;
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
    return c;
  }));
}

async function lookup(itemId) {
  $("#item-id").value = itemId;
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const k = $("#k").value || 10;
  setStatus("looking up " + itemId + " ...");
  try {
    const [item, answer] = await Promise.all([
      getJSON(itemPath(itemId)),
      getJSON(itemPath(itemId) + "/similar?k=" + encodeURIComponent(k) + "&mode=" + mode),
    ]);
    $("#query").replaceChildren(card(item));
    showResults(answer.results);
    $("#version").textContent = "version " + answer.version;
    let text = answer.results.length + " similar items (" + answer.mode + ")";
    if (answer.note) text += ": " + answer.note;
    setStatus(text, false);
    history.replaceState(null, "", "?item=" + encodeURIComponent(itemId) + "&mode=" + mode);
  } catch (err) {
    $("#query").replaceChildren();
    $("#results").replaceChildren();
    setStatus(err.message, true);
  }
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  setStatus("embedding the image ...");
  try {
    const answer = await getJSON("/v1/similar/image?k=" + ($("#k").value || 10), { method: "POST", body: form });
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
$("#upload").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("#upload-file").files[0];
  if (file) upload(file);
});

const params = new URLSearchParams(location.search);
if (params.get("mode")) {
  const radio = document.querySelector('input[name="mode"][value="' + params.get("mode") + '"]');
  if (radio) radio.checked = true;
}
samples();
if (params.get("item")) lookup(params.get("item"));
