"""Beam search over characters: the most probable continuations of a text, not random ones.

Sampling draws one character at a time; greedy decoding takes the single most likely
one, and a choice that looked best at one step can lead somewhere improbable a few
steps on. Beam search keeps the `width` most probable continuations found so far
(the beams), extends each by every character, and keeps the `width` most probable of
those, step after step: a cheap, deterministic approximation of the most probable
continuation of a given length (Graves, 2012, "Sequence Transduction with RNNs";
Sutskever et al., 2014).

Length normalization. Without a stop string every beam has the same length, and
beams are ranked by their total log-probability. With one, a beam that generates it
ends there, shorter than the others; a shorter text always has the larger total,
so finished and running beams are compared by their **mean log-probability per
character**,

    score(y) = (1 / |y|) * sum over t of log p(y_t | prime, y_1 .. y_t-1)

where |y| counts every generated character, the stop string's included (the model
had to write it). That is minus the beam's bits per character times ln 2: the
beam the model finds least surprising per character wins. The search ends after
`length` characters (a running beam then counts as cut there, as a sample is), when
every beam has ended, or once `results` beams and the greedy stream have ended and
each of those beams scores better than every running beam does so far (a heuristic:
a running beam's mean can still rise).

Never worse than greedy. Plain beam search can lose to greedy decoding: on a model
trained for a few minutes, a beam of 2 after "ROMEO:\n" dropped greedy's "A\nS" for
two prefixes starting "BR", which then turned improbable (-29.4 nats over 12
characters, against greedy's -15.9). So a beam wider than 1 carries one more stream
that follows greedy decoding, and its continuation competes with the beams at the
end: the answer's log-probability is at least greedy's for the same length (with a
stop string, its mean per character is at least that of greedy's continuation).

The beams (and the greedy stream) are streams of one batch: each step reorders
their hidden states by parent and runs one batched step, through the same
hand-fused step (or, from PARALLEL_STREAMS streams up, the model itself) that
sampling that many streams uses, so a beam of 8 costs about what 9 samples cost.

    beams = beam_search(model, (hidden, logits), width=8, length=200)
    beams[0].ids, beams[0].log_prob      # the best continuation and its log-probability
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from chargen.arguments import BEAM, LENGTH, SAMPLES
from chargen.errors import ArgumentError
from chargen.model import CharRNN, Hidden, map_hidden
from chargen.precision import FP32, Precision
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import PARALLEL_STREAMS, _expand, _many_stream_network
from chargen.vocab import Vocab


@dataclass(frozen=True)
class Beam:
    """One continuation found by beam search."""

    ids: list[int]  # the generated token ids, the stop string's included when `finished`
    log_prob: float  # natural log of its probability under the model, given the prime
    finished: bool  # it ended by generating the stop string

    @property
    def score(self) -> float:
        """The mean log-probability per generated token: what beams are ranked by."""
        return self.log_prob / len(self.ids) if self.ids else 0.0


class BatchedSteps:
    """`width` streams of one model stepped as one batch, reordered between steps.

    Starts with every stream in a copy of one stream's `hidden` (L, 1, H). Each call
    first makes stream i continue from stream parents[i] (a beam taking over its
    parent's state), then feeds stream i its token ids[i], and returns the next
    logits (width, V), fp32. Fewer than PARALLEL_STREAMS streams run through the
    hand-fused step, more through the model, as sampling that many streams does.
    """

    def __init__(self, model: CharRNN, hidden: Hidden, width: int, precision: Precision):
        hidden = _expand(hidden, width)
        if width < PARALLEL_STREAMS:
            self.fused = FusedStep(model, hidden, precision.dtype)
        else:
            self.fused = None
            self.network, self.hidden, self.autocast = _many_stream_network(model, hidden, precision)

    def __call__(self, parents: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            for state in self.fused.state:  # in place: the step keeps views into these tensors
                state.copy_(state.index_select(1, parents))
            return self.fused(ids)
        hidden = map_hidden(lambda h: h.index_select(1, parents), self.hidden)
        with self.autocast():
            logits, self.hidden = self.network(ids.unsqueeze(1), hidden)
        return logits[:, -1].float()


@torch.inference_mode()
def beam_search(
    model: CharRNN,
    start: tuple[Hidden, torch.Tensor],
    width: int,
    length: int,
    results: int = 1,
    stop: Optional[Sequence[int]] = None,
    precision: Precision = FP32,
) -> list[Beam]:
    """The `results` best of the continuations a beam of `width` finds, best first.

    `start` is one stream's (hidden, logits) after reading the prime (see
    generate.read); it is not modified. A beam ends when its last tokens are `stop`
    (token ids). The beams returned are distinct token sequences; ranking and
    the end of the search are as the module docstring says.
    """
    assert 1 <= results <= width, "results must be between 1 and the beam width"
    if length == 0:
        return [Beam(ids=[], log_prob=0.0, finished=False)]
    model.eval()
    hidden, logits = start
    device, V = logits.device, logits.shape[-1]
    stop_ids = torch.tensor(list(stop or []), dtype=torch.long, device=device)
    S = len(stop_ids)
    # Rows 0 .. width-1 are the beams; row `width`, when the beam is wider than 1, follows
    # greedy decoding (a beam of 1 is greedy decoding itself).
    G = width if width > 1 else None
    rows = width + (G is not None)
    steps = BatchedSteps(model, hidden, rows, precision)
    # All beams start as one: only row 0 (and the greedy row) is alive, so the first step
    # picks distinct tokens.
    scores = torch.full((rows,), -math.inf, device=device)  # each row's log-probability so far
    scores[0] = 0.0
    if G is not None:
        scores[G] = 0.0
    logits = logits.float().expand(rows, V)
    tails = torch.zeros(rows, S, dtype=torch.long, device=device)  # the last S tokens of each row
    history: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parents, tokens) of each step: back-pointers
    ended: list[tuple[int, int, float]] = []  # (step, row, log_prob) of each row that generated `stop`
    for t in range(length):
        log_probs = torch.log_softmax(logits, dim=-1)  # (rows, V)
        candidates = scores[:width].unsqueeze(1) + log_probs[:width]  # (width, V)
        top, flat = candidates.view(-1).topk(width)  # best first; -inf where fewer remain
        parents, tokens = flat // V, flat % V
        if G is not None:  # the greedy row takes the most likely token, as sampling at temperature 0 does
            greedy = logits[G].argmax().view(1)
            parents, tokens = torch.cat([parents, parents.new_tensor([G])]), torch.cat([tokens, greedy])
            top = torch.cat([top, scores[G] + log_probs[G, greedy]])
        scores = top
        history.append((parents, tokens))
        if S:
            tails = torch.cat([tails[parents, 1:], tokens.unsqueeze(1)], dim=1)
            done = (tails == stop_ids).all(dim=1) & torch.isfinite(scores) if t + 1 >= S else None
            for row in [] if done is None else done.nonzero().flatten().tolist():
                ended.append((t, row, scores[row].item()))
                scores[row] = -math.inf  # it leaves the beam; the others refill it at the next step
        alive = torch.isfinite(scores)
        if not alive.any() or t + 1 == length:
            break
        # Enough beams have ended, each better per character than any running beam so far, and
        # the greedy row has ended too: stop early.
        if sum(row != G for _, row, _ in ended) >= results and (G is None or not alive[G]):
            means = sorted((log_prob / (step + 1) for step, row, log_prob in ended if row != G), reverse=True)
            if means[results - 1] >= scores[alive].max().item() / (t + 1):
                break
        logits = steps(parents, tokens)
    found = ended + ([(t, row, scores[row].item()) for row in alive.nonzero().flatten().tolist()]
                     if t + 1 == length else [])  # running rows count only as cut at `length`
    finished = {(step, row) for step, row, _ in ended}
    beams, seen = [], set()
    for step, row, log_prob in sorted(found, key=lambda f: -f[2] / (f[0] + 1)):
        ids = _trace(history, step, row)
        if tuple(ids) not in seen:  # the greedy row may have found what a beam found
            seen.add(tuple(ids))
            beams.append(Beam(ids=ids, log_prob=log_prob, finished=(step, row) in finished))
    return beams[:results]


def _trace(history: list[tuple[torch.Tensor, torch.Tensor]], step: int, beam: int) -> list[int]:
    """The tokens of the beam that was `beam` at `step`, followed back through its parents."""
    ids = []
    for parents, tokens in reversed(history[: step + 1]):
        ids.append(int(tokens[beam]))
        beam = int(parents[beam])
    return ids[::-1]


@dataclass(frozen=True)
class BeamConfig:
    """A checked beam search: `width` beams, the `results` best returned, `length` characters at
    most, each beam ending where it writes `stop`."""

    width: int
    results: int
    length: int
    stop: Optional[str] = None


def beam_config(width, results, length, stop=None, **sampling) -> BeamConfig:
    """A BeamConfig, or an ArgumentError naming the argument that is out of range; `sampling`
    (temperature, top_k, top_p, seed) must all be None: a search draws nothing."""
    BEAM.check(width)
    SAMPLES.check(results, high=width)  # the n best beams
    for name, value in sampling.items():
        if value is not None:
            raise ArgumentError(name, "does not apply to beam search, which is deterministic")
    LENGTH.check(length)
    if stop is not None and not isinstance(stop, str):
        raise ArgumentError("stop", f"must be a str, got {type(stop).__name__}")
    return BeamConfig(width=width, results=results, length=length, stop=stop or None)


def beam_texts(model: CharRNN, vocab: Vocab, start: tuple[Hidden, torch.Tensor], config: BeamConfig,
               precision: Precision = FP32) -> list[str]:
    """beam_search for text: the config.results best continuations, each without its stop string."""
    stop = config.stop
    # A stop string with a character the model never writes can never end a beam.
    stop_ids = vocab.encode(stop).tolist() if stop and not vocab.missing(stop) else None
    beams = beam_search(model, start, config.width, config.length, config.results, stop_ids, precision)
    return [vocab.decode(b.ids[: len(b.ids) - len(stop_ids) if b.finished else None]) for b in beams]
