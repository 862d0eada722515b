// chargen studio: pick a model, prime it, watch the text stream in, continue it;
// for a music model (music.js), continue a MIDI file, see the piano roll, play, download.
//
// It talks only to the server it came from (GET /api/models, POST /api/generate).
// Observable progress for people and tests alike: <body data-status="..."> is
// ready, streaming, done or error; the roll canvas gets data-notes; the Play
// button's data-playing is "yes" while a piece plays.
"use strict";

const $ = (id) => document.getElementById(id);
const studio = { models: [], model: null, abort: null, piece: null, player: null };

function setStatus(status, message) {
  document.body.dataset.status = status;
  $("status").textContent = message || "";
}

async function readError(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return response.statusText; }
}

// -- models -----------------------------------------------------------------------------

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) throw new Error(await readError(response));
  const answer = await response.json();
  studio.models = answer.models;
  studio.limits = answer.limits;
  // The length slider reaches exactly as far as this server allows.
  for (const id of ["length-range", "length"]) $(id).max = answer.limits.max_length;
  for (const id of ["seconds-range", "seconds"]) $(id).max = answer.limits.max_seconds;
  if (parseInt($("length").value, 10) > answer.limits.max_length) {
    $("length").value = $("length-range").value = answer.limits.max_length;
  }
  const select = $("model");
  select.replaceChildren(...studio.models.map((m) => new Option(`${m.name} (${m.kind})`, m.name)));
  select.addEventListener("change", () => chooseModel(select.value));
  chooseModel(studio.models[0].name);
}

function chooseModel(name) {
  const model = studio.models.find((m) => m.name === name);
  studio.model = model;
  const bits = model.best_val_bits == null ? "–" : model.best_val_bits.toFixed(3);
  const unit = model.kind === "text" ? "char" : "token";
  $("model-facts").textContent =
    `${model.kind}, vocabulary ${model.vocab_size}, ${model.parameters.toLocaleString()} parameters, best ${bits} bits/${unit}`;
  const music = model.kind === "midi";
  $("text-panel").hidden = music;
  $("music-panel").hidden = !music;
  $("prime").hidden = music;
  $("prime-label").hidden = music;
  $("music-controls").hidden = !music;
  $("length-setting").hidden = music;
  $("continue").disabled = true;
  $("output-prime").textContent = "";
  $("output-new").textContent = "";
  stopPlaying();
  studio.piece = null;
  drawRoll([]);
  drawLoss(model.curves, unit);
  setStatus("ready", music ? "Generate a piece (drop a .mid file to continue it), then play it."
                           : "Type a prime, or generate from scratch.");
}

// -- settings ---------------------------------------------------------------------------

// Each slider and its number field show one value; either can be edited.
for (const name of ["temperature", "top-k", "top-p", "length"]) {
  const range = $(`${name}-range`), field = $(name);
  range.addEventListener("input", () => { field.value = range.value; });
  field.addEventListener("input", () => { range.value = field.value; });
}

function settings() {
  const topK = parseInt($("top-k").value, 10), topP = parseFloat($("top-p").value);
  const seed = $("seed").value.trim();
  return {
    model: studio.model.name,
    temperature: parseFloat($("temperature").value),
    top_k: topK > 0 ? topK : null,
    top_p: topP > 0 && topP < 1 ? topP : null,
    length: parseInt($("length").value, 10),
    seed: seed === "" ? null : parseInt(seed, 10),
  };
}

function busy(on) {
  $("generate").disabled = on;
  $("stop").disabled = !on;
  $("continue").disabled = on || $("output-prime").textContent + $("output-new").textContent === "";
}

// -- text: Server-Sent Events over fetch (EventSource cannot POST) -----------------------

async function streamText(prime, continuing = false) {
  const controller = new AbortController();
  studio.abort = controller;
  busy(true);
  setStatus("streaming", "Generating…");
  const body = { ...settings(), prime, stream: true };
  // A fixed seed would replay the same random draws on every Continue; offset it by the
  // length of the text so far, so a continuation is still reproducible but new.
  if (continuing && body.seed !== null) body.seed += prime.length;
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await readError(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        handleEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (error.name === "AbortError") setStatus("done", "Stopped.");
    else setStatus("error", error.message);
  } finally {
    studio.abort = null;
    busy(false);
  }
}

function handleEvent(block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  const payload = JSON.parse(data);
  if (name === "piece") {
    $("output-new").textContent += payload.text;
    const output = $("output");
    output.scrollTop = output.scrollHeight;
  } else if (name === "done") {
    const reused = payload.prime_reused ? `, ${payload.prime_reused.toLocaleString()} characters of prime reused` : "";
    setStatus("done", `${payload.text.length.toLocaleString()} characters in ${payload.time.toFixed(2)} s${reused}`);
  } else if (name === "error") {
    setStatus("error", payload.error);
  }
}

// -- drawing ----------------------------------------------------------------------------

function canvasContext(canvas) {
  // Draw at the screen's pixel density, in CSS pixels.
  const ratio = window.devicePixelRatio || 1, width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  return { g, width, height };
}

// Train and validation bits against steps, from the run's metrics.jsonl.
function drawLoss(curves, unit) {
  const { g, width, height } = canvasContext($("loss"));
  const series = [["train", curves.train, "#d08a2c"], ["validation", curves.val, "#2c6fbb"]];
  const points = series.flatMap(([, s]) => s);
  if (points.length === 0) {
    g.fillStyle = "#667085";
    g.fillText("No metrics.jsonl in this run.", 10, 20);
    return;
  }
  const left = 44, right = 10, top = 10, bottom = 24;
  const steps = points.map((p) => p[0]), values = points.map((p) => p[1]);
  const x0 = Math.min(...steps), x1 = Math.max(...steps, x0 + 1);
  const y0 = Math.min(...values), y1 = Math.max(...values, y0 + 0.01);
  const x = (s) => left + ((s - x0) / (x1 - x0)) * (width - left - right);
  const y = (v) => top + (1 - (v - y0) / (y1 - y0)) * (height - top - bottom);
  g.strokeStyle = "#d9dce3";
  g.fillStyle = "#667085";
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(width - right, y(v)); g.stroke();
    g.fillText(v.toFixed(2), 4, y(v) + 4);
  }
  g.fillText(`step ${x0}`, left, height - 6);
  g.fillText(`${x1}`, width - right - 40, height - 6);
  let legend = left + 80;
  for (const [name, data, colour] of series) {
    if (data.length === 0) continue;
    g.strokeStyle = colour;
    g.lineWidth = 2;
    g.beginPath();
    data.forEach(([s, v], i) => (i ? g.lineTo(x(s), y(v)) : g.moveTo(x(s), y(v))));
    g.stroke();
    g.lineWidth = 1;
    g.fillStyle = colour;
    g.fillText(`${name} bits/${unit}`, legend, height - 6);
    legend += 120;
  }
}

// -- wiring -----------------------------------------------------------------------------

$("generate").addEventListener("click", () => {
  if (studio.model.kind === "midi") { generateMusic(); return; }
  const prime = $("prime").value;
  $("output-prime").textContent = prime;
  $("output-new").textContent = "";
  streamText(prime);
});
$("continue").addEventListener("click", () => {
  if (studio.model.kind === "midi") { generateMusic(true); return; }
  // The whole text so far is the new prime; the server reuses the hidden state it
  // kept for the previous prime, so only the characters since then are read again.
  const text = $("output-prime").textContent + $("output-new").textContent;
  $("output-prime").textContent = text;
  $("output-new").textContent = "";
  streamText(text, true);
});
$("stop").addEventListener("click", () => { if (studio.abort) studio.abort.abort(); });
window.addEventListener("resize", () => {
  if (studio.model) drawLoss(studio.model.curves, studio.model.kind === "text" ? "char" : "token");
  if (studio.model && studio.model.kind === "midi" && !studio.player) drawRoll(shownRoll());
});

loadModels().catch((error) => setStatus("error", `Could not load the models: ${error.message}`));
