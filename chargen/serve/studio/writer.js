// chargen studio, the writing view: write in a text area while the model suggests how to go on.
//
// A moment after you stop typing (DEBOUNCE_MS), the text before the caret goes to
// POST /api/suggest; the best completion appears greyed after the caret. Tab accepts its
// first word, Shift-Tab all of it, Esc dismisses it, Alt-Up/Alt-Down cycle through the
// alternatives. Without a suggestion on screen, Tab moves the focus as usual, so the page
// works with the keyboard alone. The server keeps the hidden state of the text it was
// last asked about, so each request reads only what was typed since.
//
// A stale answer is never shown: an answer is drawn only while the editor still holds
// exactly the text it was asked for, with the caret at its end; any change clears what
// is shown and aborts the request in flight. Observable state for people and tests:
// the editor's data-suggestion is "none", "waiting", "shown" or "dismissed".
"use strict";

const DEBOUNCE_MS = 150;
const ALTERNATIVES = 5; // suggestions asked for; Alt-Up/Down cycle through them
// The first word of a suggestion: what comes before it (spaces, punctuation), then its letters.
const FIRST_WORD = /^[^\p{L}\p{N}'’_]*[\p{L}\p{N}'’_]+/u;

const writer = { suggestions: [], index: 0, text: null, timer: null, abort: null };

function editor() { return $("editor"); }

// The text a suggestion continues: all of it, when the caret is at its end; else null.
function textBeforeCaret() {
  const area = editor();
  const atEnd = area.selectionStart === area.value.length && area.selectionEnd === area.value.length;
  return atEnd ? area.value : null;
}

function setWriterState(state, message) {
  editor().dataset.suggestion = state;
  if (message !== undefined) $("writer-status").textContent = message;
}

// Forget what is shown and what is asked: after any change the old answer is stale.
function clearSuggestion(state = "none") {
  clearTimeout(writer.timer);
  if (writer.abort) writer.abort.abort();
  writer.abort = null;
  writer.suggestions = [];
  writer.index = 0;
  writer.text = null;
  $("ghost-text").textContent = "";
  $("suggestion").textContent = "";
  $("alternatives").replaceChildren();
  setWriterState(state);
}

function scheduleSuggestion(delay = DEBOUNCE_MS) {
  clearSuggestion();
  if (!studio.model || studio.model.kind !== "text" || !textBeforeCaret()) return;
  setWriterState("waiting");
  writer.timer = setTimeout(askForSuggestion, delay);
}

async function askForSuggestion() {
  const text = textBeforeCaret();
  if (!text) { setWriterState("none"); return; }
  const controller = new AbortController();
  writer.abort = controller;
  try {
    const response = await fetch("/api/suggest", {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: controller.signal,
      body: JSON.stringify({ model: studio.model.name, text, n: ALTERNATIVES, unit: $("writer-unit").value }),
    });
    if (!response.ok) throw new Error(await readError(response));
    const answer = await response.json();
    if (writer.abort !== controller || textBeforeCaret() !== text) return; // stale: the text has changed
    writer.abort = null;
    const reused = answer.prime_reused ? `, ${answer.prime_reused.toLocaleString()} characters reused` : "";
    $("writer-status").textContent = `${answer.suggestions.length} suggestions in ${answer.time.toFixed(3)} s${reused}`;
    if (answer.suggestions.length === 0) { setWriterState("none"); return; }
    writer.suggestions = answer.suggestions;
    writer.text = text;
    showSuggestion(0);
  } catch (error) {
    if (error.name === "AbortError") return;
    if (writer.abort === controller) writer.abort = null;
    setWriterState("none", error.message);
  }
}

function showSuggestion(index) {
  const n = writer.suggestions.length;
  writer.index = ((index % n) + n) % n;
  $("ghost-text").textContent = writer.text;
  $("suggestion").textContent = writer.suggestions[writer.index].text;
  $("alternatives").replaceChildren(...writer.suggestions.map((s, i) => {
    const item = document.createElement("li");
    item.textContent = JSON.stringify(s.text);
    const probability = document.createElement("span");
    probability.className = "probability";
    probability.textContent = `${(100 * s.probability).toFixed(2)}%`;
    item.append(probability);
    item.setAttribute("aria-current", i === writer.index ? "true" : "false");
    return item;
  }));
  syncScroll();
  setWriterState("shown");
}

// Put `insert` at the caret as if typed: the browser's undo remembers it.
function insertAtCaret(insert) {
  const area = editor();
  area.focus();
  if (!document.execCommand("insertText", false, insert)) {
    area.setRangeText(insert, area.selectionStart, area.selectionEnd, "end");
    area.dispatchEvent(new Event("input"));
  }
}

function accept(all) {
  const suggestion = writer.suggestions[writer.index].text;
  const word = suggestion.match(FIRST_WORD);
  insertAtCaret(all || !word ? suggestion : word[0]);
  scheduleSuggestion(0); // the text is new: ask at once for what follows it
}

function onKeyDown(event) {
  if (editor().dataset.suggestion !== "shown") return; // Tab and Esc keep their usual meaning
  if (event.key === "Tab" && !event.altKey && !event.ctrlKey && !event.metaKey) {
    event.preventDefault();
    accept(event.shiftKey);
  } else if (event.key === "Escape") {
    event.preventDefault();
    clearSuggestion("dismissed");
  } else if (event.altKey && (event.key === "ArrowUp" || event.key === "ArrowDown")) {
    event.preventDefault();
    showSuggestion(writer.index + (event.key === "ArrowDown" ? 1 : -1));
  }
}

function syncScroll() { $("ghost").scrollTop = editor().scrollTop; }

function showView(write) {
  $("view-generate").setAttribute("aria-pressed", String(!write));
  $("view-write").setAttribute("aria-pressed", String(write));
  document.querySelector(".controls").hidden = write;
  document.querySelector(".work").hidden = write;
  $("writer").hidden = !write;
  if (write) {
    updateWriterModel();
    editor().focus();
  } else {
    clearSuggestion();
  }
}

function updateWriterModel() {
  const text = studio.model && studio.model.kind === "text";
  editor().disabled = !text;
  $("writer-status").textContent = text ? "" : "The writing view needs a text model: pick one above.";
  scheduleSuggestion();
}

editor().addEventListener("input", () => scheduleSuggestion());
editor().addEventListener("keydown", onKeyDown);
editor().addEventListener("scroll", syncScroll);
// A caret moved away from the end (a click, an arrow key) makes the suggestion meaningless.
document.addEventListener("selectionchange", () => {
  if (document.activeElement === editor() && writer.text !== null && textBeforeCaret() !== writer.text) clearSuggestion();
});
$("writer-unit").addEventListener("change", () => { scheduleSuggestion(0); editor().focus(); });
$("model").addEventListener("change", () => { if (!$("writer").hidden) updateWriterModel(); });
$("view-generate").addEventListener("click", () => showView(false));
$("view-write").addEventListener("click", () => showView(true));
