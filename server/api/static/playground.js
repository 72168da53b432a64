// The playground: a client of the public API like any other (same routes, same x-api-key header).
"use strict";

const SLUG = "ltx-2-19b-i2v";
const KEY_STORAGE = "ltx2-api-key";
const $ = (id) => document.getElementById(id);

function headers(json) {
  const result = json ? { "content-type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) result["x-api-key"] = key;
  return result;
}

// The form is built from the API's own schema, so every parameter, default and range is the server's.
async function buildParameterFields() {
  const response = await fetch("openapi.json");
  const schema = (await response.json()).components.schemas.I2VParams;
  const box = $("parameters");
  $("parameters-loading").remove();
  for (const [name, spec] of Object.entries(schema.properties)) {
    if (name === "image") continue;
    const label = document.createElement("label");
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
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = (spec.description || "") + rangeText(spec);
    label.append(hint, input);
    box.append(label);
  }
}

// " (256 to 1280)"; a minimum of -1 is a special value (seed: -1 picks one at random): " (-1, or 0 to N)".
function rangeText(spec) {
  if (spec.minimum === undefined || spec.maximum === undefined) return "";
  if (spec.minimum === -1) return ` (-1, or 0 to ${spec.maximum})`;
  return ` (${spec.minimum} to ${spec.maximum})`;
}

function readFileAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("could not read " + file.name));
    reader.readAsDataURL(file);
  });
}

async function requestBody() {
  const file = $("image-file").files[0];
  const url = $("image-url").value.trim();
  if (!file && !url) throw new Error("image: upload a picture or give its URL");
  const body = { image: file ? await readFileAsDataUri(file) : url };
  for (const input of $("parameters").querySelectorAll("input, textarea")) {
    const value = input.value.trim();
    if (value === "") continue;
    body[input.name] = input.dataset.kind === "integer" || input.dataset.kind === "number" ? Number(value) : value;
  }
  return body;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function showProgress(state) {
  const progress = typeof state.progress === "number" ? state.progress : 0;
  $("progress").value = progress;
  const parts = [state.status, state.stage];
  if (state.total_steps > 1) parts.push(`step ${state.step}/${state.total_steps}`);
  parts.push(`${Math.round(progress * 100)}%`);
  if (state.queue_position) parts.push(`queue position ${state.queue_position}`);
  if (typeof state.eta_seconds === "number" && state.status !== "COMPLETED") parts.push(`about ${Math.ceil(state.eta_seconds)} s left`);
  $("progress-text").textContent = parts.filter(Boolean).join(" · ");
}

function showResult(result) {
  showProgress(result);
  if (result.status === "COMPLETED") {
    $("video").src = result.output;
    $("video").hidden = false;
    $("download").href = result.output;
    $("download").hidden = false;
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
      showProgress(last);
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

async function generate(event) {
  event.preventDefault();
  $("error").hidden = true;
  $("video").hidden = true;
  $("video").removeAttribute("src");
  $("download").hidden = true;
  $("progress").value = 0;
  $("submit").disabled = true;
  try {
    const body = await requestBody();
    $("progress-text").textContent = "Submitting…";
    const submitted = await fetch(`v2/${SLUG}`, { method: "POST", headers: headers(true), body: JSON.stringify(body) });
    if (!submitted.ok) throw new Error(await errorText(submitted));
    const job = await submitted.json();
    $("job-id").textContent = `request ${job.request_id}`;
    let final = null;
    try {
      final = await followEvents(job.request_id);
    } catch (_) {
      final = null; // the stream broke (a proxy, a dropped connection): fall back to polling
    }
    if (!final || (final.status !== "COMPLETED" && final.status !== "FAILED")) final = await pollUntilFinal(job.response_url);
    showResult(final);
  } catch (error) {
    showError(error.message || String(error));
  } finally {
    $("submit").disabled = false;
  }
}

function previewImage() {
  const file = $("image-file").files[0];
  const preview = $("image-preview");
  if (file) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  } else {
    preview.hidden = true;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => localStorage.setItem(KEY_STORAGE, $("api-key").value.trim()));
  $("image-file").addEventListener("change", previewImage);
  $("job-form").addEventListener("submit", generate);
  buildParameterFields().catch((error) => showError("could not load the parameters: " + error.message));
});
