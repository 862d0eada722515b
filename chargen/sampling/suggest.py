"""Suggestions: the most probable ways to go on to the end of the next word, phrase or line.

A character model predicts one character at a time; an editor wants whole words.
This search turns the one into the other without sampling: it follows the most
probable continuations of a text character by character, and every time one of
them reaches the end of the unit asked for, it becomes a suggestion whose
probability is exactly what the model gives it.

A completion is the shortest continuation that holds some of the unit's content
and then reaches the unit's end:

- word: any leading characters that are not part of a word (a space, a newline, a
  comma), then word characters (letters, digits, ', ’ and _), up to the first character
  that is not one. That character is left out, and its probability is summed over
  every such character: a word's probability is that of the word *and then its end*.
  So "To be or no" may get "t" (finishing "not"), and "To be, or" may get " not".
- phrase: up to and including the first , ; : . ! or ?, or up to a newline (left out),
  once some word character has come.
- line: up to the next newline (left out), once some character other than a space has
  come. A text that ends at the end of its line gets the whole next line.

Ranking: by probability, for every unit. A longer text is always less probable than
its prefix, so the most probable phrases and lines are short ones ("Ay, my lord." is
a likelier line than any long one). Ranking by mean log-probability per character
instead, as beam search does with a stop string, was tried: on a model trained for a
few minutes every phrase and line suggestion became a loop ("ve and there and there
and ...") run to MAX_CHARS, since repeating itself is what such a model predicts best.

The search is best-first (uniform-cost, as Dijkstra's): a heap holds, by
log-probability, the completions found so far and the prefixes not yet read; each
model step reads the BATCH most probable prefixes as one batch through the fused step
(chargen/sampling/fused.py), from the hidden states of their parents (the first from
the state after the text, which is reused, never modified). A completion is never
more probable than its prefix, so when a completion is at the top of the heap nothing
left can beat it: the suggestions come out exactly in order of probability. The
search reads at most MAX_PREFIXES prefixes (the bound in time and memory: that many
hidden states) and completions of at most MAX_CHARS characters; past that bound it
answers with the most probable completions it has found.

    found = suggest(model, vocab.tokens, (hidden, logits), n=3, unit="word")
    found[0].text, found[0].probability
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Optional

import torch

from chargen.errors import ArgumentError
from chargen.model import CharRNN, Hidden
from chargen.precision import FP32, Precision
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import _expand

UNITS = ("word", "phrase", "line")
MAX_CHARS = {"word": 40, "phrase": 160, "line": 240}  # the longest completion each unit searches for
BATCH = 8  # prefixes read per model step, as one batch through the fused step
MAX_PREFIXES = 4096  # prefixes one search may read: its bound in time and memory
INITIAL_ROOM = 256  # hidden states a search makes room for at first
WORD_PUNCTUATION = "'’_"  # characters that belong to a word besides letters and digits
PHRASE_ENDS = ",;:.!?"  # end a phrase and belong to it


@dataclass(frozen=True)
class Suggestion:
    """A completion and the model's probability of it, given the text it completes."""

    text: str
    probability: float


@dataclass(frozen=True)
class Rules:
    """Where a unit ends, as masks over the vocabulary (V,) bool."""

    content: torch.Tensor  # a character of the unit's content: a completion needs one
    ends_after: torch.Tensor  # ends the unit and belongs to it (phrase punctuation)
    ends_before: torch.Tensor  # ends the unit and is left out (its probabilities are summed)


def rules(tokens: list[str], unit: str) -> Rules:
    """The unit's rules over a vocabulary, or an ArgumentError(unit) when the vocabulary
    cannot end (or fill) that unit: a model that never writes a newline has no lines."""
    if unit not in UNITS:
        raise ArgumentError("unit", f"must be one of {', '.join(UNITS)}, got {unit!r}")
    word = [c.isalnum() or c in WORD_PUNCTUATION for c in tokens]
    if unit == "word":
        content, after, before = word, [False] * len(tokens), [not w for w in word]
        needs = "word characters and a character that ends a word (a space or punctuation)"
    elif unit == "phrase":
        content, after, before = word, [c in PHRASE_ENDS for c in tokens], [c == "\n" for c in tokens]
        needs = f"word characters and a character that ends a phrase ({' '.join(PHRASE_ENDS)} or a newline)"
    else:
        content, after, before = [not c.isspace() for c in tokens], [False] * len(tokens), [c == "\n" for c in tokens]
        needs = "a newline and characters other than spaces"
    if not any(content) or not (any(after) or any(before)):
        raise ArgumentError("unit", f"{unit!r} needs {needs}, and the model's vocabulary lacks them")
    as_mask = lambda flags: torch.tensor(flags, dtype=torch.bool)  # noqa: E731
    return Rules(as_mask(content), as_mask(after), as_mask(before))


@torch.inference_mode()
def suggest(
    model: CharRNN,
    tokens: list[str],
    start: tuple[Hidden, torch.Tensor],
    n: int = 3,
    unit: str = "word",
    precision: Precision = FP32,
    batch: int = BATCH,
    max_prefixes: int = MAX_PREFIXES,
) -> list[Suggestion]:
    """The `n` most probable distinct completions of a text to the end of a `unit`, most
    probable first: exact, unless the search reads `max_prefixes` prefixes first (then
    the most probable it found). See the module docstring.

    `start` is one stream's (hidden, logits) after reading the text (see
    generate.read), never modified; `tokens` is the vocabulary.
    """
    search = _Search(model, rules(tokens, unit), start, MAX_CHARS[unit], precision, batch, max_prefixes)
    found: list[tuple[float, int, int]] = []  # (log_prob, prefix, char after it or -1)
    while len(found) < n:
        item = search.next_completion()
        if item is None:
            break
        found.append(item)
    return [Suggestion(text="".join(tokens[i] for i in search.text_of(prefix, char)), probability=math.exp(lp))
            for lp, prefix, char in found]


class _Search:
    """Best-first search over the prefixes of completions, `batch` prefixes read per model step.

    Every prefix read is a node: its parent, its last character, its log-probability,
    whether it holds the unit's content yet, its hidden state (in `states`) and its
    extensions sorted by probability. The heap holds, by log-probability, completions
    and "the k-th most probable extension of node i" (each node's next extension is
    pushed only when the one before it is taken: a node never puts V items on the heap).
    """

    COMPLETION, EXTENSION = 0, 1

    def __init__(self, model, unit_rules: Rules, start, max_chars: int, precision: Precision, batch: int,
                 max_prefixes: int):
        hidden, logits = start
        self.rules = Rules(*(mask.to(logits.device) for mask in (unit_rules.content, unit_rules.ends_after,
                                                                 unit_rules.ends_before)))
        self.content = unit_rules.content.tolist()
        self.max_chars, self.batch, self.capacity = max_chars, batch, max_prefixes + 1
        self.step = FusedStep(model, _expand(hidden, batch), precision.dtype)
        # The hidden state of every node, (L, room, H) per tensor of the step's state, grown as
        # needed (most searches read a few dozen prefixes); node 0 is the text.
        self.states = [t.new_empty(t.shape[0], INITIAL_ROOM, t.shape[2]) for t in self.step.state]
        for store, t in zip(self.states, hidden if isinstance(hidden, tuple) else (hidden,)):
            store[:, 0] = t[:, 0]
        self.parent, self.char, self.depth, self.started, self.log_prob = [-1], [-1], [0], [False], [0.0]
        self.extensions: list[tuple[list[float], list[int]]] = []  # per node: log-probs and characters, best first
        self.heap: list[tuple[float, int, int, int]] = []  # (-log_prob, kind, node, char or rank)
        self._add(torch.log_softmax(logits.float(), dim=-1), [0])

    def next_completion(self) -> Optional[tuple[float, int, int]]:
        """The next most probable completion (log_prob, prefix node, char or -1), or None."""
        while self.heap:
            reading = []  # extensions to read in one step: each at least as probable as what is left
            while self.heap:
                minus_lp, kind, node, what = self.heap[0]
                if kind == self.COMPLETION:
                    if reading:  # read those first: they may lead to something more probable
                        break
                    heapq.heappop(self.heap)
                    return -minus_lp, node, what
                if len(reading) == self.batch or len(self.parent) + len(reading) == self.capacity:
                    break
                heapq.heappop(self.heap)
                reading.append((node, what))
                log_probs, chars = self.extensions[node]
                if what + 1 < len(chars):  # the node's next extension takes its place
                    heapq.heappush(self.heap, (-(self.log_prob[node] + log_probs[what + 1]), kind, node, what + 1))
            if not reading:  # no room for more prefixes: what is found is the answer
                self.heap = [item for item in self.heap if item[1] == self.COMPLETION]
                heapq.heapify(self.heap)
                if not self.heap:
                    return None
                continue
            self._read(reading)
        return None

    def text_of(self, node: int, char: int) -> list[int]:
        """The token ids of a completion: its prefix's characters, then `char` if it is kept."""
        ids = [char] if char >= 0 else []
        while node > 0:
            ids.append(self.char[node])
            node = self.parent[node]
        return ids[::-1]

    def _read(self, reading: list[tuple[int, int]]) -> None:
        """Extend each (node, rank) by its rank-th extension, all in one model step, as new nodes."""
        first = len(self.parent)
        parents = [node for node, _ in reading]
        chars = [self.extensions[node][1][rank] for node, rank in reading]
        for node, rank, char in zip(parents, (r for _, r in reading), chars):
            self.parent.append(node)
            self.char.append(char)
            self.depth.append(self.depth[node] + 1)
            self.started.append(self.started[node] or self.content[char])
            self.log_prob.append(self.log_prob[node] + self.extensions[node][0][rank])
        rows = len(reading)
        pad = self.batch - rows  # the step's batch is fixed: repeat the first row in the spare ones
        index = torch.tensor(parents + parents[:1] * pad, device=self.states[0].device)
        for live, store in zip(self.step.state, self.states):
            live.copy_(store.index_select(1, index))
        logits = self.step(torch.tensor(chars + chars[:1] * pad, device=index.device))[:rows]
        while first + rows > self.states[0].shape[1]:  # room for twice as many
            self.states = [torch.cat([store, torch.empty_like(store)], dim=1) for store in self.states]
        new = torch.arange(first, first + rows, device=index.device)
        for live, store in zip(self.step.state, self.states):
            store.index_copy_(1, new, live[:, :rows])
        self._add(torch.log_softmax(logits.float(), dim=-1), list(range(first, first + rows)))

    def _add(self, log_probs: torch.Tensor, nodes: list[int]) -> None:
        """Push the completions and the most probable extension of each new node; log_probs (len(nodes), V)."""
        r = self.rules
        ends_before = torch.logsumexp(log_probs[:, r.ends_before], dim=1).tolist() if r.ends_before.any() else None
        after_ids = r.ends_after.nonzero().flatten().tolist()
        after = log_probs[:, r.ends_after].tolist() if after_ids else None
        # A started prefix goes on with what does not end its unit; one not started yet with anything.
        started = torch.tensor([self.started[node] for node in nodes], device=log_probs.device)
        allowed = torch.where(started.unsqueeze(1), ~(r.ends_after | r.ends_before).unsqueeze(0), True)
        sorted_lp, order = log_probs.masked_fill(~allowed, -math.inf).sort(dim=1, descending=True)
        for row, node in enumerate(nodes):
            lp, depth = self.log_prob[node], self.depth[node]
            if self.started[node]:
                if ends_before is not None:
                    heapq.heappush(self.heap, (-(lp + ends_before[row]), self.COMPLETION, node, -1))
                if after is not None and depth < self.max_chars:
                    for char, char_lp in zip(after_ids, after[row]):
                        heapq.heappush(self.heap, (-(lp + char_lp), self.COMPLETION, node, char))
            values, chars = sorted_lp[row].tolist(), order[row].tolist()
            kept = next((i for i, v in enumerate(values) if v == -math.inf), len(values))
            self.extensions.append((values[:kept], chars[:kept]))
            if kept and depth < self.max_chars:  # a completion holds at most max_chars characters
                heapq.heappush(self.heap, (-(lp + values[0]), self.EXTENSION, node, 0))
