// chargen studio, music: continue a MIDI file dropped or picked as the prime, write new
// music of a chosen length, continue the piece just written, draw it as a piano roll
// (pitch names on the axis, the prime in its own colour, a moving play-head), play it
// through synth.js and download it.
//
// Loaded after app.js, whose helpers ($, studio, settings, busy, setStatus, readError)
// it uses. The prime file is sent to the server inside the JSON request (base64), never
// uploaded anywhere else. Observable state for tests: the roll canvas's data-notes,
// data-prime-notes and data-playhead (seconds); the drop zone's data-prime ("yes" once a
// file is read); the Play button's data-playing.
"use strict";

const PRIME_COLOUR = "#a89f8d";  // notes of the prime: warm grey, whatever their instrument
const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const music = { prime: null, primeEnd: 0, previewRoll: [], download: null };  // prime: {name, midi (base64)}

function pitchName(pitch) {
  return NOTE_NAMES[pitch % 12] + String(Math.floor(pitch / 12) - 1);  // MIDI 60 is C4
}

// -- the prime ----------------------------------------------------------------------------

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

async function readPrimeFile(file) {
  if (!file) return;
  music.prime = { name: file.name, midi: toBase64(new Uint8Array(await file.arrayBuffer())) };
  $("prime-file-name").textContent = file.name;
  $("prime-clear").hidden = false;
  await previewPrime();
}

function clearPrime() {
  music.prime = null;
  music.primeEnd = 0;
  music.previewRoll = [];
  $("prime-file").value = "";
  $("prime-file-name").textContent = "Drop a .mid file here to continue it, or";
  $("prime-clear").hidden = true;
  $("prime-drop").dataset.prime = "no";
  studio.piece = null;
  $("continue").disabled = true;
  drawRoll([]);
  setStatus("ready", "Generate a piece, then play it.");
}

function primeSeconds() {
  return parseFloat($("prime-seconds").value) || 10;
}

// The prime as the model will hear it: the server reads it and writes nothing new (length 0).
async function previewPrime() {
  stopPlaying();
  setStatus("streaming", "Reading the prime…");
  try {
    const answer = await requestMusic({ ...settings(), length: 0, prime_midi: music.prime.midi,
                                        prime_seconds: primeSeconds() });
    music.previewRoll = answer.samples[0].roll;
    music.primeEnd = answer.prime_end;
    studio.piece = null;
    $("continue").disabled = true;
    $("prime-drop").dataset.prime = "yes";
    drawRoll(music.previewRoll);
    setStatus("ready", `Prime: ${music.previewRoll.length} notes, ${music.primeEnd.toFixed(1)} s of ${music.prime.name}. ` +
                       "Generate continues it.");
  } catch (error) {
    music.prime = null;
    $("prime-drop").dataset.prime = "no";
    setStatus("error", error.message);
  }
}

// -- generating ---------------------------------------------------------------------------

async function requestMusic(body) {
  const response = await fetch("/api/generate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await readError(response));
  return response.json();
}

function musicRequest() {
  const body = { ...settings(), length: studio.limits.max_length, seconds: parseFloat($("seconds").value) };
  return body;
}

// Generate: new music after the prime (or from nothing). Continue: after the piece just written.
async function generateMusic(continuing = false) {
  const body = musicRequest();
  if (continuing) {
    body.prime_midi = studio.piece.midi;
    body.prime_seconds = studio.piece.seconds + 1;  // all of it
    if (body.seed !== null) body.seed += studio.piece.notes;  // reproducible, but not the same draws again
  } else if (music.prime) {
    body.prime_midi = music.prime.midi;
    body.prime_seconds = primeSeconds();
  }
  busy(true);
  stopPlaying();
  setStatus("streaming", continuing ? "Continuing…" : "Composing…");
  try {
    const answer = await requestMusic(body);
    const piece = answer.samples[0];
    if (!continuing) music.primeEnd = answer.prime_end;  // the dropped prime keeps its colour after a Continue
    studio.piece = piece;
    drawRoll(piece.roll);
    const bytes = Uint8Array.from(atob(piece.midi), (c) => c.charCodeAt(0));
    const link = $("download");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    music.download = new Blob([bytes], { type: "audio/midi" });
    link.href = URL.createObjectURL(music.download);
    link.classList.remove("disabled");
    $("play").disabled = piece.notes === 0;
    $("music-facts").textContent = `${piece.notes} notes, ${piece.seconds.toFixed(1)} s`;
    setStatus("done", `${continuing ? "Continued" : "Composed"} in ${answer.time.toFixed(2)} s.`);
  } catch (error) {
    setStatus("error", error.message);
  } finally {
    busy(false);
    $("continue").disabled = !studio.piece;
  }
}

// -- playing --------------------------------------------------------------------------------

function togglePlay() {
  if (studio.player) { stopPlaying(); return; }
  const button = $("play");
  studio.player = ChargenSynth.play(studio.piece.roll, { onEnd: () => {
    studio.player = null;
    button.textContent = "Play";
    button.dataset.playing = "done";
  } });
  button.textContent = "Stop";
  button.dataset.playing = "yes";
  animatePlayhead();
}

function stopPlaying() {
  if (studio.player) studio.player.stop();
}

function animatePlayhead() {
  const player = studio.player;
  if (!player) { drawRoll(shownRoll()); return; }
  drawRoll(studio.piece.roll, player.context.currentTime - player.startedAt);
  requestAnimationFrame(animatePlayhead);
}

function shownRoll() {
  return studio.piece ? studio.piece.roll : music.previewRoll;
}

// -- drawing ----------------------------------------------------------------------------------

// Is a note of the roll the prime's? The prime ends with its last onset (prime_end), so its
// notes start up to then; a note the model adds to that last chord is drawn with the prime.
function inPrime(start) {
  return music.primeEnd > 0 && start <= music.primeEnd + 1e-3;
}

// Notes are [start_s, end_s, pitch, velocity, program, isDrum]. Pitched notes are bars on
// rows named by pitch; those of the prime in PRIME_COLOUR, the new ones coloured by
// instrument; drums are diamonds in their own lane at the bottom.
function drawRoll(notes, playhead) {
  const canvas = $("roll");
  const primeNotes = notes.filter((n) => inPrime(n[0]));
  canvas.dataset.notes = String(notes.length);
  canvas.dataset.primeNotes = String(primeNotes.length);
  canvas.dataset.playhead = playhead === undefined ? "" : playhead.toFixed(3);
  const { g, width, height } = canvasContext(canvas);
  if (notes.length === 0) {
    g.fillStyle = "#667085";
    g.fillText("The piece appears here. Drop a .mid file to continue it.", 10, 20);
    return;
  }
  const pitched = notes.filter((n) => !n[5]), drums = notes.filter((n) => n[5]);
  const drumLane = drums.length ? 28 : 0, axis = 16, left = 34;
  const end = Math.max(...notes.map((n) => n[1]), 0.1);
  const low = Math.min(...pitched.map((n) => n[2]), 127) - 1, high = Math.max(...pitched.map((n) => n[2]), 0) + 1;
  const rows = Math.max(high - low, 12), top = 4, rollHeight = height - drumLane - axis - top;
  const x = (t) => left + (t / end) * (width - left - 4);
  const rowHeight = rollHeight / rows;
  const y = (pitch) => top + (high - pitch) * rowHeight - rowHeight;
  // The pitch axis: a line and a name at every C (every pitch when there are few rows).
  g.fillStyle = "#667085";
  g.strokeStyle = "#eceef2";
  for (let pitch = low + 1; pitch < high; pitch++) {
    if (pitch % 12 !== 0 && rows > 14) continue;
    g.beginPath(); g.moveTo(left, y(pitch) + rowHeight); g.lineTo(width, y(pitch) + rowHeight); g.stroke();
    g.fillText(pitchName(pitch), 2, y(pitch) + rowHeight / 2 + 4);
  }
  // The time axis: a tick every 1, 2, 5, 10... seconds, about a dozen in all.
  const every = [1, 2, 5, 10, 15, 30, 60, 120].find((s) => end / s <= 12) || 300;
  for (let t = 0; t <= end; t += every) if (x(t) + 24 <= width) g.fillText(`${t}s`, x(t), height - 4);
  for (const [start, stop, pitch, velocity, program] of pitched) {
    g.fillStyle = inPrime(start) ? PRIME_COLOUR : `hsla(${(program * 47) % 360}, 65%, ${62 - velocity / 6}%, 0.9)`;
    g.fillRect(x(start), y(pitch), Math.max(x(stop) - x(start), 1.5), Math.max(rowHeight, 1.5));
  }
  if (music.primeEnd > 0) {  // where the new music begins
    g.strokeStyle = "#8a8170";
    g.setLineDash([4, 3]);
    g.beginPath(); g.moveTo(x(music.primeEnd), 0); g.lineTo(x(music.primeEnd), height - axis); g.stroke();
    g.setLineDash([]);
  }
  if (drumLane) {
    g.fillStyle = "#f1f2f5";
    g.fillRect(left, height - drumLane - axis, width - left, drumLane);
    for (const [start, , pitch] of drums) {
      const cx = x(start), cy = height - axis - drumLane / 2 + ((pitch % 5) - 2) * 3;
      g.fillStyle = inPrime(start) ? PRIME_COLOUR : "#3a3f4b";
      g.beginPath();
      g.moveTo(cx, cy - 3); g.lineTo(cx + 3, cy); g.lineTo(cx, cy + 3); g.lineTo(cx - 3, cy);
      g.fill();
    }
  }
  if (playhead !== undefined && playhead >= 0) {
    g.fillStyle = "#b5472f";
    g.fillRect(x(Math.min(playhead, end)), 0, 2, height - axis);
  }
}

// -- wiring -------------------------------------------------------------------------------------

for (const name of ["prime-seconds", "seconds"]) {
  const range = $(`${name}-range`), field = $(name);
  range.addEventListener("input", () => { field.value = range.value; });
  field.addEventListener("input", () => { range.value = field.value; });
}
$("prime-file").addEventListener("change", (event) => readPrimeFile(event.target.files[0]));
$("prime-clear").addEventListener("click", clearPrime);
$("prime-seconds").addEventListener("change", () => { if (music.prime) previewPrime(); });
$("prime-seconds-range").addEventListener("change", () => { if (music.prime) previewPrime(); });
const drop = $("prime-drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  readPrimeFile(event.dataTransfer.files[0]);
});
$("play").addEventListener("click", togglePlay);
