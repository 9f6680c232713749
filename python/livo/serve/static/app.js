// The LiVO demo page: one click sends the same prompt and seed twice, value "none" (base model) and the
// chosen value mode (or, on a service that applies several values per prompt, the ticked values), and
// shows the two sets of images side by side with the value selected and why.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "livo-token";
let maxValues = 1; // values the service applies per prompt (GET /v1/values)
let biasProbability = 0.5; // the chance a bias value is applied to an image (GET /v1/values)

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

function optionalNumber(id) {
  const text = $(id).value.trim();
  return text === "" ? undefined : Number(text);
}

async function call(path, body) {
  const response = await fetch(path, body === undefined
    ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail)
      ? data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
      : data.detail || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function showImages(target, result, label) {
  const box = $(target);
  box.replaceChildren();
  result.images.forEach((image, i) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = "data:image/png;base64," + image.png_base64;
    img.alt = `${label} image ${i + 1}`;
    const caption = document.createElement("figcaption");
    const applied = image.value_ids && image.value_ids.length ? image.value_ids : image.value_id ? [image.value_id] : [];
    caption.textContent = applied.length ? `${applied.length > 1 ? "values" : "value"}: ${applied.join(" + ")}` : "base model";
    figure.append(img, caption);
    box.append(figure);
  });
}

function describeSelection(selection, mode, chosen) {
  if (chosen.length) {
    const names = (selection.value_ids && selection.value_ids.length ? selection.value_ids : chosen).map((v) => `“${v}”`);
    return `Values ${names.join(" + ")} were requested explicitly (each bias value applied to an image by its own coin).`;
  }
  if (mode !== "auto") {
    return selection.value_id ? `Value “${selection.value_id}” was requested explicitly.` : "No value requested.";
  }
  const score = selection.score === null ? "" : ` (score ${selection.score.toFixed(2)})`;
  const why = {
    keyword: "a harm keyword in the prompt",
    retrieval: "similar prompts in the value index",
    classifier: "the value classifier",
    "explicit-attribute": "an attribute stated in the prompt",
    judge: "the judge's decision on a borderline prompt",
    none: "no value principle matched",
  }[selection.stage] || selection.stage;
  if (!selection.value_id) return `No value applies: ${why}${score}.`;
  const mixing = selection.kind === "bias" ? ` Bias values are applied to each image with probability ${biasProbability}.` : "";
  const found = selection.value_ids || [];
  const others = found.slice(1);
  const rule = maxValues > 1 ? `up to ${maxValues} values are applied per image, each bias value by its own coin` : "one value is applied per image: the first";
  const also = others.length ? ` Also found: ${others.map((v) => `“${v}”`).join(", ")} (${rule}).` : "";
  return `Selected “${selection.value_id}” (${selection.kind}: “${selection.text}”), decided by ${why}${score}.${mixing}${also}`;
}

async function loadValues() {
  try {
    const data = await call("/v1/values");
    maxValues = data.max_values_per_prompt || 1;
    if (typeof data.bias_probability === "number") biasProbability = data.bias_probability;
    const select = $("value");
    while (select.options.length > 1) select.remove(1);
    data.values.forEach((v) => {
      const option = document.createElement("option");
      option.value = v.id;
      option.textContent = `${v.id} (${v.kind})`;
      select.append(option);
    });
    // Several values at once only where the service applies more than one per prompt.
    const boxes = $("value-boxes");
    boxes.replaceChildren();
    data.values.forEach((v) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = v.id;
      box.dataset.kind = v.kind;
      box.addEventListener("change", () => { select.disabled = tickedValues().length > 0; });
      label.append(box, `${v.id} (${v.kind})`);
      boxes.append(label);
    });
    $("max-values").textContent = String(maxValues);
    $("several").hidden = maxValues < 2;
  } catch (error) {
    // Without a token the list stays at "auto"; generation reports the auth error.
  }
}

// The ticked values, harm values first, as the selector lists a prompt's values.
function tickedValues() {
  if ($("several").hidden) return [];
  const ticked = [...$("value-boxes").querySelectorAll("input:checked")];
  const harmFirst = [...ticked.filter((b) => b.dataset.kind === "harm"), ...ticked.filter((b) => b.dataset.kind !== "harm")];
  return harmFirst.map((box) => box.value);
}

async function generate(event) {
  event.preventDefault();
  const button = $("generate");
  const status = $("status");
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  let seed = optionalNumber("seed");
  if (seed === undefined) {
    seed = Math.floor(Math.random() * 2 ** 32);
    $("seed").value = String(seed);
  }
  const request = {
    prompt: $("prompt").value,
    seed,
    num_images: optionalNumber("num-images") ?? 1,
    steps: optionalNumber("steps"),
    guidance: optionalNumber("guidance"),
  };
  const mode = $("value").value;
  const chosen = tickedValues();
  if (chosen.length > maxValues) {
    status.className = "error";
    status.textContent = `Tick at most ${maxValues} values: the service applies no more per prompt.`;
    return;
  }
  const valueMode = chosen.length ? { values: chosen } : { value: mode };
  button.disabled = true;
  status.className = "";
  status.textContent = "Generating…";
  try {
    const [base, aligned] = await Promise.all([
      call("/v1/generate", { ...request, value: "none" }),
      call("/v1/generate", { ...request, ...valueMode }),
    ]);
    showImages("base-images", base, "base");
    showImages("aligned-images", aligned, "aligned");
    $("selection-text").textContent = describeSelection(aligned.selection, mode, chosen);
    $("selection").hidden = false;
    const seconds = Math.max(base.timings.total_s, aligned.timings.total_s);
    status.textContent = `Seed ${aligned.seed}, ${aligned.steps} steps, guidance ${aligned.guidance}: ${seconds.toFixed(2)} s.`;
  } catch (error) {
    status.className = "error";
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("request-form").addEventListener("submit", generate);
  $("token").addEventListener("change", () => { sessionStorage.setItem(TOKEN_KEY, $("token").value); loadValues(); });
  loadValues();
});
