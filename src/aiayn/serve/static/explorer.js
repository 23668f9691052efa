// The explorer: the served model's answers, and its attention as heatmaps. Plain JavaScript,
// no libraries and nothing fetched from elsewhere, so that it works offline. Every text from
// the model is put on the page as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let maps = [];  // the last /v1/attention answer's maps: {kind, layer, rows, cols, weights}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${response.status}: ${answer.error}`);
  return answer;
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
}

function chips(element, tokens) {
  element.replaceChildren(...tokens.map((t) => {
    const span = document.createElement("span");
    span.textContent = t;
    return span;
  }));
}

function options(select, values, label) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => {
    const option = document.createElement("option");
    option.value = String(v);
    option.textContent = label(v);
    return option;
  }));
  if (values.map(String).includes(keep)) select.value = keep;
}

// viridis-like: dark blue (0) through green to yellow (1)
function colour(w) {
  const hue = 250 - 190 * w, light = 22 + 58 * w;
  return `hsl(${hue}, 70%, ${light}%)`;
}

function showAttention(answer) {
  maps = answer.maps;
  const kinds = [...new Set(maps.map((m) => m.kind))];
  options($("kind"), kinds, (k) => k);
  pickKind();
  $("attention-panel").hidden = false;
}

function current() {
  const kind = $("kind").value, layer = Number($("layer").value);
  return maps.find((m) => m.kind === kind && m.layer === layer);
}

function pickKind() {
  const layers = maps.filter((m) => m.kind === $("kind").value).map((m) => m.layer);
  options($("layer"), layers, (n) => `${n}`);
  pickLayer();
}

function pickLayer() {
  const map = current();
  options($("head"), map.weights.map((_, h) => h), (h) => `head ${h + 1}`);
  drawHeatmap();
}

function drawHeatmap() {
  const map = current(), head = Number($("head").value);
  const grid = $("heatmap");
  grid.style.gridTemplateColumns = `max-content repeat(${map.cols.length}, 1.6rem)`;
  const cells = [document.createElement("div")];
  for (const col of map.cols) {
    const label = document.createElement("div");
    label.className = "label col-label";
    label.textContent = col;
    cells.push(label);
  }
  map.weights[head].forEach((row, i) => {
    const label = document.createElement("div");
    label.className = "label row-label";
    label.textContent = map.rows[i];
    cells.push(label);
    row.forEach((w, j) => {
      const cell = document.createElement("div");
      cell.className = "cell";
      cell.dataset.row = i;
      cell.dataset.col = j;
      cell.dataset.weight = w;
      cell.style.background = colour(w);
      cell.title = `${map.rows[i]} \u2192 ${map.cols[j]}: ${w.toFixed(3)}`;
      cells.push(cell);
    });
  });
  grid.replaceChildren(...cells);
  grid.dataset.kind = map.kind;
  grid.dataset.layer = map.layer;
  grid.dataset.head = head;
}

async function translate(event) {
  event.preventDefault();
  showError(null);
  const source = $("source").value.trim();
  if (!source) return;
  const beam = Number($("beam").value), alpha = Number($("alpha").value);
  try {
    const { translations: [best] } = await post("/v1/translate", {
      text: [source], beam, alpha, n_best: beam,
    });
    $("translation").textContent = best.text;
    $("nbest").replaceChildren(...best.n_best.map(([text, score]) => {
      const item = document.createElement("li");
      item.textContent = `${text}  (score ${score.toFixed(3)})`;
      return item;
    }));
    const answer = await post("/v1/attention", { text: source, target: best.text });
    const cross = answer.maps.find((m) => m.kind === "cross");
    chips($("source-tokens"), cross.cols);
    chips($("output-tokens"), cross.rows);
    showAttention(answer);
    $("kind").value = "cross";
    pickKind();
  } catch (error) { showError(error); }
}

async function generate(event) {
  event.preventDefault();
  showError(null);
  const out = $("generated");
  out.replaceChildren();
  const body = {
    prompt: $("prompt").value || "\n",
    temperature: Number($("temperature").value),
    top_k: Number($("top-k").value),
    top_p: Number($("top-p").value),
    max_new_tokens: Number($("max-new-tokens").value),
    stream: true,
  };
  try {
    const response = await fetch("/v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).error}`);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        onEvent(buffer.slice(0, end), out);
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) { showError(error); }
}

function onEvent(block, out) {
  const lines = block.split("\n");
  const kind = (lines.find((l) => l.startsWith("event: ")) || "event: token").slice(7);
  const data = JSON.parse(lines.find((l) => l.startsWith("data: ")).slice(6));
  if (kind === "error") throw new Error(data.error);
  if (kind !== "token" || !data.text) return;
  const span = document.createElement("span");
  span.textContent = data.text;
  if (data.p !== null) {
    span.style.background = `hsl(${120 * data.p}, 70%, 82%)`;
    span.title = `p = ${data.p.toFixed(3)}`;
    span.dataset.p = data.p;
  }
  out.append(span);
}

async function classify(event) {
  event.preventDefault();
  showError(null);
  const text = $("text").value.trim();
  if (!text) return;
  try {
    const { labels: [result] } = await post("/v1/classify", { text: [text] });
    $("probabilities").replaceChildren(...Object.entries(result.probabilities).map(([label, p]) => {
      const item = document.createElement("li"), bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${(p * 20).toFixed(2)}rem`;
      item.append(bar, `${label}: ${p.toFixed(3)}${label === result.label ? "  \u2190" : ""}`);
      return item;
    }));
    const answer = await post("/v1/attention", { text });
    chips($("source-tokens"), answer.maps[0].cols);
    $("output-tokens").replaceChildren();
    showAttention(answer);
  } catch (error) { showError(error); }
}

async function tag(event) {
  event.preventDefault();
  showError(null);
  const text = $("sentence").value.trim();
  if (!text) return;
  try {
    const answer = await post("/v1/attention", { text });
    $("tagged").replaceChildren(...answer.words.map((word, i) => {
      const span = document.createElement("span"), tag = document.createElement("b");
      tag.textContent = answer.tags[i];
      span.append(tag, word);
      return span;
    }));
    chips($("source-tokens"), answer.maps[0].cols);
    $("output-tokens").replaceChildren();
    showAttention(answer);
  } catch (error) { showError(error); }
}

const PANELS = {
  encoder_decoder: ["translate-panel", "translate-form", translate],
  decoder_only: ["generate-panel", "generate-form", generate],
  encoder_classifier: ["classify-panel", "classify-form", classify],
  encoder_tagger: ["tag-panel", "tag-form", tag],
};

async function start() {
  try {
    const info = await (await fetch("/v1/model")).json();
    const millions = (info.parameters / 1e6).toFixed(1);
    $("model-info").textContent =
      `${info.family} model, ${millions}M parameters, ${info.vocab_size} tokens`;
    const [panel, form, handler] = PANELS[info.family];
    $(panel).hidden = false;
    $(form).addEventListener("submit", handler);
    if (info.family === "encoder_decoder") {
      $("beam").value = info.config.decode.beam;
      $("alpha").value = info.config.decode.alpha;
    }
    $("kind").addEventListener("change", pickKind);
    $("layer").addEventListener("change", pickLayer);
    $("head").addEventListener("change", drawHeatmap);
    document.body.dataset.ready = info.family;
  } catch (error) { showError(error); }
}

start();
