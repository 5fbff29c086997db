// The studio: a thin page over the same /v1 API the openai client uses. No dependencies, no CDN.
"use strict";
const $ = (id) => document.getElementById(id);
const objectUrls = [];

function headers() {
  const key = $("key").value.trim() || localStorage.getItem("happyhorse-key") || "";
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

async function blobUrl(path) {
  const url = URL.createObjectURL(await (await api(path)).blob());
  objectUrls.push(url);
  return url;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function loadModel() {
  try {
    const models = await (await api("/v1/models")).json();
    const m = models.data[0];
    $("model").textContent = "model: " + m.id;
    $("size").placeholder = m.defaults.width + "x" + m.defaults.height;
    $("seconds").placeholder = m.defaults.seconds;
  } catch (e) {
    $("model").textContent = "model: " + e.message;
  }
}

async function show(video) {
  $("job").hidden = false;
  $("progress").value = video.progress;
  $("status").textContent = video.status + " " + video.progress + "%";
  $("status").dataset.status = video.status;
  if (video.status === "failed") showError(video.error ? video.error.message : "failed");
  if (video.status !== "completed") return;
  const url = await blobUrl("/v1/videos/" + video.id + "/content");
  $("player").src = url;
  $("player").dataset.id = video.id;
  $("download").href = url;
  $("download").download = video.id + ".mp4";
  $("download").hidden = false;
  if (video.cost) {
    $("cost").textContent = video.cost.compute_seconds.toFixed(2) + " s of compute, " +
      video.cost.price.toFixed(6) + " " + video.cost.currency;
  }
}

async function poll(id) {
  for (;;) {
    const video = await (await api("/v1/videos/" + id)).json();
    await show(video);
    if (video.status === "completed" || video.status === "failed") return video;
    await new Promise((done) => setTimeout(done, 250));
  }
}

async function submit(event) {
  event.preventDefault();
  showError("");
  if ($("key").value.trim()) localStorage.setItem("happyhorse-key", $("key").value.trim());
  const form = new FormData();
  form.append("prompt", $("prompt").value);
  for (const id of ["size", "seconds", "seed", "steps"]) {
    if ($(id).value.trim()) form.append($(id).name, $(id).value.trim());
  }
  const shots = $("shots").value.split("\n").map((s) => s.trim()).filter((s) => s);
  if (shots.length) form.append("shots", JSON.stringify(shots));
  if ($("image").files[0]) form.append("input_reference", $("image").files[0]);
  if ($("audio").files[0]) form.append("audio_reference", $("audio").files[0]);
  $("generate").disabled = true;
  $("download").hidden = true;
  try {
    const video = await (await api("/v1/videos", { method: "POST", body: form })).json();
    await show(video);
    await poll(video.id);
    await refresh();
  } catch (e) {
    showError(e.message);
  } finally {
    $("generate").disabled = false;
  }
}

async function refresh() {
  try {
    const page = await (await api("/v1/videos?limit=12")).json();
    const list = $("recent");
    list.replaceChildren();
    for (const video of page.data) {
      const item = document.createElement("li");
      item.title = video.prompt;
      if (video.status === "completed") {
        const img = document.createElement("img");
        img.alt = video.prompt;
        blobUrl("/v1/videos/" + video.id + "/content?variant=thumbnail").then((u) => { img.src = u; }, () => {});
        item.append(img);
        item.onclick = () => show(video);
      }
      const text = document.createElement("div");
      text.textContent = video.status + " · " + video.size + " · " + video.seconds + " s · " + video.prompt.slice(0, 60);
      item.append(text);
      list.append(item);
    }
  } catch (e) {
    showError(e.message);
  }
}

$("create").addEventListener("submit", submit);
$("refresh").addEventListener("click", refresh);
loadModel();
refresh();
