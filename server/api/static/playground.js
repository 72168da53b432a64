// The playground: a client of the public API like any other (same routes, same x-api-key header).
"use strict";

const I2V_SLUG = "ltx-2-19b-i2v";
const KEY_STORAGE = "ltx2-api-key";
const RECENT_STORAGE = "ltx2-recent-jobs";
const RECENT_MAX = 10;
const $ = (id) => document.getElementById(id);
const SIZE_FIELDS = ["width", "height", "num_frames", "fps"];
const STAGES = {
  queued: "Waiting in the queue",
  starting: "Starting",
  enhancing_prompt: "Enhancing the prompt",
  encoding_prompt: "Writing the prompt",
  denoising: "Denoising",
  decoding: "Decoding",
  decoding_audio: "Decoding audio",
  decoding_video: "Decoding video",
  muxing: "Saving",
  completed: "Done",
  failed: "Failed",
};

// Fields with their own controls (the mode switch, keyframe rows, the LoRA picker, a checkbox), not built
// from the schema.
const OWN_CONTROLS = new Set(["image", "keyframes", "loras", "enhance_prompt"]);
const TASKS = ["i2v", "t2v"]; // the modes this page knows how to ask for
const MB = 1024 * 1024;

const capabilities = { auth_required: false, webhooks: false };
// What requests may ask for (/ready's capabilities); a server too old to say offers plain image-to-video.
let offer = {
  models: [{ slug: I2V_SLUG, task: "i2v" }],
  keyframes: { max: 0 },
  loras: { loras: [], max_per_request: 0, scale_range: [-2, 2] },
  enhance_prompt: false,
  content_policy: false,
};
let current = null; // { id, responseUrl, cancelled }
let lastRequest = null; // { slug, body } of the last request sent

function headers(json) {
  const result = json ? { "content-type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) result["x-api-key"] = key;
  return result;
}

// What the server offers: the key field and the webhook only where they mean something; a banner for the test model.
async function readCapabilities() {
  try {
    const body = await (await fetch("ready")).json();
    Object.assign(capabilities, body);
  } catch (_) {
    capabilities.auth_required = true; // unknown: show the key field rather than hide a needed one
  }
  $("key-box").hidden = !capabilities.auth_required;
  $("test-model-banner").hidden = !capabilities.test_model;
  const webhook = $("field-webhook");
  if (webhook) webhook.hidden = !capabilities.webhooks;
  if (capabilities.capabilities) offer = { ...offer, ...capabilities.capabilities };
  buildCapabilityControls();
}

// The controls beyond Segmind's parameters, each only where this server offers it.
function buildCapabilityControls() {
  setUpModes();
  $("enhance-box").hidden = !offer.enhance_prompt;
  $("content-policy-note").hidden = !offer.content_policy;
  $("keyframes-limit").textContent = `Up to ${offer.keyframes.max}.`;
  buildLoraPicker();
  showMode();
}

// Image-to-video or text-to-video: only the modes the server lists; no switch when there is one.
function setUpModes() {
  const tasks = offer.models.map((model) => model.task).filter((task) => TASKS.includes(task));
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.closest("label").hidden = !tasks.includes(radio.value);
  }
  if (tasks.length && !tasks.includes(currentMode())) {
    document.querySelector(`input[name=mode][value=${tasks[0]}]`).checked = true;
  }
  $("mode-box").hidden = tasks.length < 2;
}

function currentMode() {
  return document.querySelector("input[name=mode]:checked")?.value || "i2v";
}

function currentSlug() {
  const mode = currentMode();
  return offer.models.find((model) => model.task === mode)?.slug || I2V_SLUG;
}

// Text-to-video has no picture, so neither the picture nor keyframes show.
function showMode() {
  const t2v = currentMode() === "t2v";
  $("image-box").hidden = t2v;
  $("keyframes-box").hidden = t2v || !(offer.keyframes.max > 0);
  $("add-keyframe").disabled = keyframeRows().length >= offer.keyframes.max;
}

// The form is built from the API's own schema, so every parameter, default and range is the server's.
async function buildParameterFields() {
  const response = await fetch("openapi.json");
  const schema = (await response.json()).components.schemas.I2VParams;
  $("parameters-loading").remove();
  for (const [name, spec] of Object.entries(schema.properties)) {
    if (OWN_CONTROLS.has(name) || spec.type === "array" || spec.type === "boolean") continue;
    const label = document.createElement("label");
    label.id = "field-" + name;
    label.textContent = spec.title || name;
    const long = spec.type === "string" && (spec.maxLength || 0) > 200;
    const input = document.createElement(long ? "textarea" : "input");
    input.id = "param-" + name;
    input.name = name;
    if (spec.type === "integer" || spec.type === "number") {
      input.type = "number";
      input.step = spec.type === "integer" ? "1" : "any";
      if (spec.minimum !== undefined) input.min = spec.minimum;
      if (spec.maximum !== undefined) input.max = spec.maximum;
    } else if (!long) {
      input.type = name === "webhook" ? "url" : "text";
    }
    if (spec.default !== undefined && spec.default !== null) input.value = spec.default;
    if ((schema.required || []).includes(name)) input.required = true;
    input.dataset.kind = spec.type || "string";
    input.classList.add("param");
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = (spec.description || "") + rangeText(spec);
    if (name === "seed") {
      const row = document.createElement("span");
      row.className = "seed-row";
      const dice = document.createElement("button");
      dice.type = "button";
      dice.id = "seed-dice";
      dice.title = "A random seed";
      dice.setAttribute("aria-label", "A random seed");
      dice.textContent = "Random";
      dice.addEventListener("click", () => {
        input.value = Math.floor(Math.random() * Math.min(Number(spec.maximum) || 4294967295, 4294967295));
      });
      row.append(input, dice);
      label.append(hint, row);
    } else {
      label.append(hint, input);
    }
    if (name === "prompt") $("prompt-box").append(label);
    else if (SIZE_FIELDS.includes(name)) $("size-fields").append(label);
    else $("advanced-box").append(label);
    if (SIZE_FIELDS.includes(name)) input.addEventListener("input", showSizeState);
  }
  showSizeState();
}

// " (256 to 1280)"; a minimum of -1 is a special value (seed: -1 picks one at random): " (-1, or 0 to N)".
function rangeText(spec) {
  if (spec.minimum === undefined || spec.maximum === undefined) return "";
  if (spec.minimum === -1) return ` (-1, or 0 to ${spec.maximum})`;
  return ` (${spec.minimum} to ${spec.maximum})`;
}

// The duration in seconds beside frames and fps, and which preset the size matches.
function showSizeState() {
  const frames = Number($("param-num_frames")?.value);
  const fps = Number($("param-fps")?.value);
  $("duration-text").textContent =
    frames > 0 && fps > 0 ? `${frames} frames at ${fps} fps: ${(frames / fps).toFixed(1)} s of video` : "";
  for (const button of document.querySelectorAll(".preset")) {
    const active = $("param-width")?.value === button.dataset.width && $("param-height")?.value === button.dataset.height;
    button.classList.toggle("active", active);
    button.setAttribute("aria-pressed", String(active));
  }
  showKeyframeLimits();
}

function readFileAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read " + file.name));
    reader.readAsDataURL(file);
  });
}

// The request for the chosen mode: { slug, body }.
async function buildRequest() {
  const t2v = currentMode() === "t2v";
  const body = t2v ? {} : { image: await pictureValue() };
  for (const input of document.querySelectorAll("#job-form .param")) {
    if (input.closest("label")?.hidden) continue;
    const value = input.value.trim();
    if (value === "") continue;
    body[input.name] = input.dataset.kind === "integer" || input.dataset.kind === "number" ? Number(value) : value;
  }
  if (!t2v && keyframeRows().length) body.keyframes = await keyframesValue(body.num_frames);
  const loras = lorasValue();
  if (loras.length) body.loras = loras;
  if (!$("enhance-box").hidden && $("param-enhance_prompt").checked) body.enhance_prompt = true;
  return { slug: currentSlug(), body };
}

async function pictureValue() {
  const file = $("image-file").files[0];
  const url = $("image-url").value.trim();
  if (!file && !url) throw new Error("image: upload a picture or give its URL");
  return file ? readFileAsDataUri(file) : url;
}

// Keyframes: rows of a picture (sent as a data URI), an output frame after the first, and a strength.
function keyframeRows() {
  return [...document.querySelectorAll("#keyframes .keyframe")];
}

function addKeyframeRow() {
  if (keyframeRows().length >= offer.keyframes.max) return;
  const row = document.createElement("div");
  row.className = "keyframe";
  const zone = document.createElement("label");
  zone.className = "drop-zone keyframe-zone";
  const preview = document.createElement("img");
  preview.alt = "The keyframe's picture";
  preview.hidden = true;
  const text = document.createElement("span");
  text.textContent = "Drop a picture here, or click to choose one";
  const file = document.createElement("input");
  file.type = "file";
  file.accept = "image/*";
  file.className = "keyframe-image";
  zone.append(preview, text, file);
  const showPicture = () => {
    const chosen = file.files[0];
    if (chosen) preview.src = URL.createObjectURL(chosen);
    preview.hidden = !chosen;
    text.textContent = chosen ? `${chosen.name} (drop or click to change)` : "Drop a picture here, or click to choose one";
  };
  file.addEventListener("change", showPicture);
  setUpDropZone(zone, file, showPicture);

  const numbers = document.createElement("div");
  numbers.className = "row";
  const frame = numberField("Frame", "keyframe-frame", { min: 1, step: 1 });
  const last = Number($("param-num_frames")?.value) - 1;
  const taken = keyframeRows().map((other) => other.querySelector(".keyframe-frame").value);
  if (last >= 1 && !taken.includes(String(last))) frame.input.value = last;
  const strength = numberField("Strength", "keyframe-strength", { min: 0, max: 1, step: 0.05 });
  strength.input.value = 1;
  const slider = document.createElement("input");
  slider.type = "range";
  slider.className = "keyframe-strength-slider";
  Object.assign(slider, { min: 0, max: 1, step: 0.05, value: 1 });
  slider.setAttribute("aria-label", "Strength");
  slider.addEventListener("input", () => (strength.input.value = slider.value));
  strength.input.addEventListener("input", () => (slider.value = strength.input.value));
  strength.label.append(slider);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "keyframe-remove";
  remove.textContent = "Remove";
  remove.addEventListener("click", () => {
    row.remove();
    showMode();
  });
  numbers.append(frame.label, strength.label);
  row.append(zone, numbers, remove);
  $("keyframes").append(row);
  showKeyframeLimits();
  showMode();
}

function numberField(title, className, limits) {
  const label = document.createElement("label");
  label.textContent = title;
  const input = document.createElement("input");
  input.type = "number";
  input.className = className;
  Object.assign(input, limits);
  label.append(input);
  return { label, input };
}

// A keyframe's frame lies after frame 0 and before num_frames.
function showKeyframeLimits() {
  const frames = Number($("param-num_frames")?.value);
  for (const input of document.querySelectorAll(".keyframe-frame")) {
    if (frames > 1) input.max = frames - 1;
    else input.removeAttribute("max");
  }
}

// Checked here as the server would, so a wrong frame is named before the pictures are sent.
async function keyframesValue(numFrames) {
  const keyframes = [];
  for (const [index, row] of keyframeRows().entries()) {
    const file = row.querySelector(".keyframe-image").files[0];
    if (!file) throw new Error(`keyframes[${index}].image: choose a picture, or remove this keyframe`);
    const text = row.querySelector(".keyframe-frame").value.trim();
    const frame = Number(text);
    if (Number.isInteger(numFrames) && numFrames > 0 && !(text !== "" && Number.isInteger(frame) && frame >= 1 && frame < numFrames)) {
      throw new Error(
        `keyframes[${index}].frame: must be an integer from 1 to ${numFrames - 1} (below num_frames ${numFrames}); got ${text || "nothing"}`
      );
    }
    const strength = row.querySelector(".keyframe-strength").value.trim();
    const keyframe = { image: await readFileAsDataUri(file), frame };
    if (strength !== "") keyframe.strength = Number(strength);
    keyframes.push(keyframe);
  }
  return keyframes;
}

// The LoRA picker: the server's LoRAs (GET /v1/loras), up to max_per_request of them, each with a scale.
function buildLoraPicker() {
  const { loras = [], max_per_request: most = 0, scale_range: [low, high] = [-2, 2] } = offer.loras || {};
  $("loras-box").hidden = loras.length === 0 || most < 1;
  $("loras-limit").textContent = `Choose up to ${most}; a scale from ${low} to ${high} (1: as trained).`;
  $("loras").replaceChildren();
  for (const lora of loras) {
    const row = document.createElement("div");
    row.className = "lora row";
    row.dataset.name = lora.name;
    const pick = document.createElement("label");
    pick.className = "check";
    const use = document.createElement("input");
    use.type = "checkbox";
    use.className = "lora-use";
    use.addEventListener("change", () => limitLoraChoices(most));
    const about = document.createElement("span");
    about.className = "hint";
    about.textContent = `rank ${lora.rank}, ${sizeText(lora.size_bytes)}`;
    pick.append(use, ` ${lora.name} `, about);
    const scale = numberField("Scale", "lora-scale", { min: low, max: high, step: 0.05 });
    scale.input.value = 1;
    row.append(pick, scale.label);
    $("loras").append(row);
  }
}

function sizeText(bytes) {
  return bytes < MB ? `${Math.max(1, Math.round(bytes / 1024))} KB` : `${(bytes / MB).toFixed(1)} MB`;
}

function limitLoraChoices(most) {
  const boxes = [...document.querySelectorAll(".lora-use")];
  const full = boxes.filter((box) => box.checked).length >= most;
  for (const box of boxes) box.disabled = full && !box.checked;
}

function lorasValue() {
  if ($("loras-box").hidden) return [];
  return [...document.querySelectorAll("#loras .lora")]
    .filter((row) => row.querySelector(".lora-use").checked)
    .map((row) => {
      const scale = row.querySelector(".lora-scale").value.trim();
      return scale === "" ? { name: row.dataset.name } : { name: row.dataset.name, scale: Number(scale) };
    });
}

// The results panel: one state at a time, so nothing stale stays on screen.
function resetPanel(stage) {
  $("stage").textContent = stage;
  $("progress-text").textContent = "";
  $("progress").value = 0;
  $("error").hidden = true;
  $("error").textContent = "";
  $("video").hidden = true;
  $("video").removeAttribute("src");
  $("enhanced-box").hidden = true;
  $("enhanced-prompt").textContent = "";
  $("download").hidden = true;
  $("cancel").hidden = true;
  $("job-id").textContent = "";
}

function showError(message) {
  $("stage").textContent = "Failed";
  $("progress-text").textContent = "";
  $("cancel").hidden = true;
  $("error").textContent = message;
  $("error").hidden = false;
}

function stageName(state) {
  if (state.status === "COMPLETED") return STAGES.completed;
  if (state.status === "FAILED") return state.error === "cancelled" ? "Cancelled" : STAGES.failed;
  if (state.status === "QUEUED" || state.stage === "queued") return STAGES.queued;
  const stage = state.stage || "";
  return STAGES[stage] || (stage ? stage.charAt(0).toUpperCase() + stage.slice(1).replace(/_/g, " ") : "Working");
}

function showProgress(state) {
  const progress = typeof state.progress === "number" ? state.progress : 0;
  $("progress").value = progress;
  $("stage").textContent = stageName(state);
  if (state.status === "COMPLETED" || state.status === "FAILED") {
    $("progress-text").textContent = "";
    return;
  }
  const parts = [];
  if (state.queue_position) parts.push(`position ${state.queue_position} in the queue`);
  if (state.total_steps > 1) parts.push(`step ${state.step} of ${state.total_steps}`);
  parts.push(`${Math.round(progress * 100)}%`);
  if (typeof state.eta_seconds === "number" && state.eta_seconds > 0) parts.push(`about ${Math.ceil(state.eta_seconds)} s left`);
  $("progress-text").textContent = parts.join(" · ");
}

function showResult(result) {
  showProgress(result);
  $("cancel").hidden = true;
  if (result.enhanced_prompt) {
    $("enhanced-prompt").textContent = result.enhanced_prompt;
    $("enhanced-box").hidden = false;
  }
  if (result.status === "COMPLETED") {
    $("video").src = result.output;
    $("video").hidden = false;
    $("download").href = result.output;
    $("download").hidden = false;
  } else if (result.error === "cancelled") {
    $("stage").textContent = "Cancelled";
    $("error").textContent = "You cancelled this job.";
    $("error").hidden = false;
  } else {
    showError(result.error || "the job failed");
  }
}

async function errorText(response) {
  try {
    return (await response.json()).error || `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

// EventSource cannot send x-api-key, so the stream is read with fetch and parsed here.
async function followEvents(requestId) {
  const response = await fetch(`v2/requests/${encodeURIComponent(requestId)}/events`, { headers: headers(false) });
  if (!response.ok) throw new Error(await errorText(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
      if (!data) continue;
      last = JSON.parse(data);
      if (current && current.id === requestId) showProgress(last);
    }
  }
  return last;
}

async function pollUntilFinal(responseUrl) {
  for (;;) {
    const response = await fetch(responseUrl, { headers: headers(false) });
    const body = await response.json();
    if (body.status === "COMPLETED" || body.status === "FAILED") return body;
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    showProgress(body);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// On a narrow screen the results are below the form: bring them into view.
function bringPanelIntoView() {
  const box = $("job").getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight - 80) $("job").scrollIntoView({ block: "start" });
}

async function watch(job) {
  current = { id: job.request_id, responseUrl: job.response_url };
  $("job-id").textContent = `request ${job.request_id}`;
  $("cancel").hidden = false;
  let final = null;
  try {
    final = await followEvents(job.request_id);
  } catch (_) {
    final = null; // the stream broke (a proxy, a dropped connection): fall back to polling
  }
  if (current?.id !== job.request_id) return; // another job took the panel
  if (!final || (final.status !== "COMPLETED" && final.status !== "FAILED")) final = await pollUntilFinal(job.response_url);
  if (current?.id !== job.request_id) return;
  showResult(final);
  updateRecent(job.request_id, final.status === "FAILED" && final.error === "cancelled" ? "cancelled" : final.status);
}

async function generate(event) {
  event.preventDefault();
  resetPanel("Submitting…");
  current = null;
  bringPanelIntoView();
  $("submit").disabled = true;
  try {
    const request = await buildRequest();
    const body = request.body;
    lastRequest = request;
    showCode();
    const submitted = await fetch(`v2/${request.slug}`, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    if (!submitted.ok) throw new Error(await errorText(submitted));
    const job = await submitted.json();
    $("stage").textContent = STAGES.queued;
    const entry = { id: job.request_id, response_url: job.response_url, prompt: body.prompt || "", at: Date.now(), status: "QUEUED" };
    addRecent({ ...entry, slug: request.slug });
    await watch(job);
  } catch (error) {
    showError(error.message || String(error));
  } finally {
    $("submit").disabled = false;
  }
}

async function cancel() {
  if (!current) return;
  $("cancel").disabled = true;
  try {
    const response = await fetch(`v2/requests/${encodeURIComponent(current.id)}`, { method: "DELETE", headers: headers(false) });
    if (!response.ok && response.status !== 409) showError(await errorText(response));
  } finally {
    $("cancel").disabled = false;
  }
}

// "Copy as curl / Python": the exact request (an uploaded picture is sent as its data URI).
function curlText({ slug, body }) {
  const key = capabilities.auth_required ? ` \\\n  -H 'x-api-key: YOUR_KEY'` : "";
  const json = JSON.stringify(body).replace(/'/g, "'\\''");
  return `curl -sS -X POST '${location.origin}/v2/${slug}' \\\n  -H 'content-type: application/json'${key} \\\n  -d '${json}'`;
}

function pythonText({ slug, body }) {
  const key = capabilities.auth_required ? `api_key="YOUR_KEY", ` : "";
  const args = Object.entries(body).map(([name, value]) => `    ${name}=${pythonLiteral(value)},`).join("\n");
  return (
    `from segmind import SegmindClient\n\n` +
    `client = SegmindClient(${key}base_url="${location.origin}/v1", timeout=900)\n` +
    `job = client.submit_async(\n    "${slug}",\n${args}\n)\n` +
    `result = job.wait(timeout=900, interval=2.0)\nprint(result["status"], result.get("output"))\n`
  );
}

// JSON spells true, false and null differently from Python; strings and numbers read the same in both.
function pythonLiteral(value) {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (Array.isArray(value)) return "[" + value.map(pythonLiteral).join(", ") + "]";
  if (typeof value === "object") {
    return "{" + Object.entries(value).map(([name, item]) => `${JSON.stringify(name)}: ${pythonLiteral(item)}`).join(", ") + "}";
  }
  return JSON.stringify(value);
}

function abbreviatedPicture(image) {
  return typeof image === "string" && image.length > 120 ? image.slice(0, 60) + "…(the picture)" : image;
}

function abbreviated({ slug, body }) {
  const copy = { ...body };
  if ("image" in copy) copy.image = abbreviatedPicture(copy.image);
  if (copy.keyframes) copy.keyframes = copy.keyframes.map((item) => ({ ...item, image: abbreviatedPicture(item.image) }));
  return { slug, body: copy };
}

function showCode() {
  if (!lastRequest) return;
  $("code").hidden = false;
  $("snippet").textContent = curlText(abbreviated(lastRequest));
}

// The snippet shows the last one copied (the picture abbreviated); the clipboard gets it whole.
async function copy(textFor, button) {
  if (!lastRequest) return;
  const label = button.textContent;
  $("snippet").textContent = textFor(abbreviated(lastRequest));
  try {
    await writeClipboard(textFor(lastRequest));
    button.textContent = "Copied";
  } catch (_) {
    button.textContent = "Copy failed: select the text below";
  }
  setTimeout(() => (button.textContent = label), 1500);
}

// navigator.clipboard exists only on https and localhost; a server reached by its LAN address is
// neither, where the older copy command still works during a click.
async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("copy refused");
}

// Recent jobs, kept in this browser; a job the server no longer keeps is marked expired.
function loadRecent() {
  try {
    return JSON.parse(localStorage.getItem(RECENT_STORAGE) || "[]");
  } catch (_) {
    return [];
  }
}

function saveRecent(list) {
  localStorage.setItem(RECENT_STORAGE, JSON.stringify(list.slice(0, RECENT_MAX)));
  renderRecent();
}

function addRecent(entry) {
  saveRecent([entry, ...loadRecent().filter((item) => item.id !== entry.id)]);
}

function updateRecent(id, status) {
  saveRecent(loadRecent().map((item) => (item.id === id ? { ...item, status } : item)));
}

function renderRecent() {
  const list = loadRecent();
  $("recent").replaceChildren();
  $("recent-empty").hidden = list.length > 0;
  for (const item of list) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "recent-job" + (item.status === "expired" ? " expired" : "");
    button.dataset.id = item.id;
    const when = new Date(item.at).toLocaleTimeString();
    const status = item.status === "expired" ? "expired" : (item.status || "").toLowerCase();
    const mode = item.slug && item.slug !== I2V_SLUG ? `${item.slug.replace(/^ltx-2-19b-/, "")} · ` : "";
    button.textContent = `${when} · ${status} · ${mode}${item.prompt ? item.prompt.slice(0, 40) : item.id}`;
    button.addEventListener("click", () => reopen(item));
    li.append(button);
    $("recent").append(li);
  }
}

// On load, ask the server about each recent job once: the ones it no longer knows (their --ttl-seconds
// passed, or another server) are marked expired before anyone clicks them.
async function markExpiredRecent() {
  const pending = loadRecent().filter((item) => item.status !== "expired");
  const answers = await Promise.all(
    pending.map((item) =>
      fetch(`v2/requests/${encodeURIComponent(item.id)}/status`, { headers: headers(false) })
        .then((response) => [item.id, response.status])
        .catch(() => [item.id, 0])
    )
  );
  const gone = new Set(answers.filter(([, status]) => status === 404).map(([id]) => id));
  if (gone.size) saveRecent(loadRecent().map((item) => (gone.has(item.id) ? { ...item, status: "expired" } : item)));
}

async function reopen(item) {
  resetPanel("Opening…");
  current = { id: item.id, responseUrl: item.response_url };
  bringPanelIntoView();
  try {
    const response = await fetch(`v2/requests/${encodeURIComponent(item.id)}`, { headers: headers(false) });
    if (response.status === 404) {
      updateRecent(item.id, "expired");
      showError(await errorText(response));
      return;
    }
    const body = await response.json();
    if (body.status === "COMPLETED" || body.status === "FAILED") {
      $("job-id").textContent = `request ${item.id}`;
      showResult(body);
      updateRecent(item.id, body.status === "FAILED" && body.error === "cancelled" ? "cancelled" : body.status);
    } else if (!response.ok) {
      showError(body.error || `HTTP ${response.status}`);
    } else {
      await watch({ request_id: item.id, response_url: item.response_url || `v2/requests/${item.id}` });
    }
  } catch (error) {
    showError(error.message || String(error));
  }
}

// The picture: a drop zone (or click to choose), or a URL; either way a preview.
function previewImage() {
  const file = $("image-file").files[0];
  const url = $("image-url").value.trim();
  const preview = $("image-preview");
  if (file) preview.src = URL.createObjectURL(file);
  else if (url) preview.src = url;
  preview.hidden = !file && !url;
  $("drop-text").textContent = file ? `${file.name} (drop or click to change)` : "Drop a picture here, or click to choose one";
}

function setUpDropZone(zone, input, onDropped) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      onDropped();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => localStorage.setItem(KEY_STORAGE, $("api-key").value.trim()));
  $("image-file").addEventListener("change", () => {
    if ($("image-file").files[0]) $("image-url").value = "";
    previewImage();
  });
  $("image-url").addEventListener("change", () => {
    if ($("image-url").value.trim()) $("image-file").value = "";
    previewImage();
  });
  setUpDropZone($("drop-zone"), $("image-file"), () => {
    $("image-url").value = "";
    previewImage();
  });
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", showMode);
  $("add-keyframe").addEventListener("click", addKeyframeRow);
  for (const button of document.querySelectorAll(".preset")) {
    button.addEventListener("click", () => {
      $("param-width").value = button.dataset.width;
      $("param-height").value = button.dataset.height;
      showSizeState();
    });
  }
  $("job-form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", cancel);
  $("copy-curl").addEventListener("click", (event) => copy(curlText, event.target));
  $("copy-python").addEventListener("click", (event) => copy(pythonText, event.target));
  renderRecent();
  buildParameterFields()
    .then(readCapabilities)
    .then(markExpiredRecent)
    .catch((error) => showError("could not load the parameters: " + error.message));
});
