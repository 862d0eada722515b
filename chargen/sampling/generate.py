"""Generation: one prime in, many tokens out, one step at a time.

The prime is run through the model to set its hidden state, then each step
turns the last logits into a distribution and draws one token per sample
(chargen.sampling.draw), and feeds it back in: through the hand-fused step
(chargen.sampling.fused) for a few streams, through the model for many. All
samples of a call advance together as one batch.

    gen = torch.Generator().manual_seed(1)
    for ids in generate(model, prime_ids, SampleConfig(temperature=0.8), gen):
        ...  # ids: (num_samples,) the tokens drawn at this step
"""

from __future__ import annotations

import contextlib
import copy
from typing import Iterator, Optional

import torch

from chargen.model import CharRNN, Hidden, map_hidden
from chargen.music.grid import PIECE_TOKEN
from chargen.music.vocabulary import Clock, TimeLimit
from chargen.precision import FP32, Precision, choose_precision
from chargen.sampling.draw import SampleConfig, choose
from chargen.sampling.fused import FusedStep
from chargen.vocab import Vocab

PARALLEL_STREAMS = 16  # from this many streams up, sampling steps run the model itself, on all threads
READ_WINDOW = 1024  # tokens of a prime run through the model at once


# inference_mode, not no_grad: it also skips autograd's version counting, which
# matters when a step is a few dozen small operations.
@torch.inference_mode()
def generate(
    model: CharRNN,
    prime: torch.Tensor,
    config: SampleConfig,
    generator: Optional[torch.Generator] = None,
    start: Optional[tuple[Hidden, torch.Tensor]] = None,
) -> Iterator[torch.Tensor]:
    """Yield the (num_samples,) token ids drawn at each step, `config.length` times.

    Every sample reads `prime` (token ids) first. Without `start` the model begins
    from a zero state and the prime must hold at least one token; with `start`, a
    (hidden, logits) pair of one stream that has already read some text (see
    read()), it goes on from there. `start` is never modified.
    """
    assert prime.dim() == 1 and (len(prime) > 0 or start is not None), "the prime must hold at least one token"
    model.eval()
    device = next(model.parameters()).device
    B = config.num_samples
    # The same precision for the prime and every step: a seed gives the same text on the
    # same machine and precision.
    precision = choose_precision(config.precision, device)
    if start is None:
        hidden, logits = model.init_hidden(B), None
    else:
        hidden, logits = _expand(start[0], B), start[1].expand(B, -1)  # FusedStep copies the hidden state it updates
    if len(prime):
        logits, hidden = read(model, prime.to(device).unsqueeze(0).expand(B, -1), hidden, precision)  # (B, V)
    if B < PARALLEL_STREAMS:
        # Few streams: per-call overhead dominates, so every later token runs through the
        # hand-fused step, on this thread's torch thread count (set once per process, never
        # here: see sampling/threads.py).
        step = FusedStep(model, hidden, precision.dtype)
        for _ in range(config.length):
            ids = choose(logits, config, generator)
            yield ids
            logits = step(ids)
    else:
        # Many streams: the products dominate, and the model's own oneDNN kernels run them
        # faster than FusedStep's MKL addmm on CPUs where MKL takes a slow path.
        network, hidden, autocast = _many_stream_network(model, hidden, precision)
        for _ in range(config.length):
            ids = choose(logits, config, generator)
            yield ids
            with autocast():
                logits, hidden = network(ids.unsqueeze(1), hidden)
            logits = logits[:, -1].float()


def _many_stream_network(model: CharRNN, hidden: Hidden, precision: Precision):
    """(network, hidden state, autocast context) for stepping many streams through the model.

    Under bf16, an LSTM or plain RNN steps through a bf16 copy of itself: the same products
    autocast runs (bitwise equal logits; tests/test_sample.py checks the draws), with the
    weights cast once instead of at every step: about 10% faster at 64 streams. A GRU keeps
    autocast, which carries its hidden state in fp32 (the copy would not).
    """
    if not precision.is_bf16 or model.config.cell == "gru":
        return model, hidden, precision.autocast
    network = copy.deepcopy(model).to(torch.bfloat16).eval()
    return network, map_hidden(lambda h: h.to(torch.bfloat16), hidden), contextlib.nullcontext


@torch.inference_mode()
def read(model: CharRNN, ids: torch.Tensor, hidden: Hidden, precision: Precision = FP32) -> tuple[torch.Tensor, Hidden]:
    """Run the model over token ids (B, T) from `hidden`: the logits (B, V) for the token
    that comes next, and the new hidden state, both fp32 whatever the precision of the
    products. Neither input is modified.

    The ids are read READ_WINDOW at a time, the state carried from window to window, so
    memory stays bounded however long the text (one pass over a 65,536-character prime
    took 935 MiB more).
    """
    assert ids.dim() == 2 and ids.shape[1] > 0, "read() needs at least one token per stream"
    model.eval()
    with precision.autocast():
        for start in range(0, ids.shape[1], READ_WINDOW):
            logits, hidden = model(ids[:, start : start + READ_WINDOW], hidden)
    return logits[:, -1].float(), map_hidden(torch.Tensor.float, hidden)


def _expand(hidden: Hidden, B: int) -> Hidden:
    """A one-stream hidden state (L, 1, H) repeated for B streams (a copy when B > 1)."""
    return map_hidden(lambda h: h.expand(-1, B, -1).contiguous(), hidden)


def generate_text(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    config: SampleConfig,
    generator: Optional[torch.Generator] = None,
    stop: Optional[str] = None,
    start: Optional[tuple[Hidden, torch.Tensor]] = None,
) -> Iterator[list[str]]:
    """Yield, at each step, the new text of every sample ("" for one that has stopped).

    A sample ends at `stop` (which is not included). Text that might be the
    start of the stop string is held back until it is known not to be, so what
    is yielded can be printed at once. `start` continues from a state, as in generate().
    """
    prime_ids = vocab.encode(prime)
    streams = [_StopFilter(stop) for _ in range(config.num_samples)]
    for ids in generate(model, prime_ids, config, generator, start=start):
        pieces = [s.feed(vocab.tokens[i]) for s, i in zip(streams, ids.tolist())]
        yield pieces
        if all(s.done for s in streams):
            return
    yield [s.flush() for s in streams]


class _StopFilter:
    """Cuts one sample's text at a stop string, holding back a possible partial match."""

    def __init__(self, stop: Optional[str]):
        self.stop = stop or ""
        self.pending = ""
        self.done = False

    def feed(self, text: str) -> str:
        if self.done:
            return ""
        if not self.stop:
            return text
        self.pending += text
        if self.stop in self.pending:
            self.done = True
            return self.pending[: self.pending.index(self.stop)]
        # Keep the longest tail that could still grow into the stop string.
        longest = min(len(self.stop) - 1, len(self.pending))
        keep = next((k for k in range(longest, 0, -1) if self.stop.startswith(self.pending[-k:])), 0)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.done else self.pending), ""
        return out


def generate_music(
    model: CharRNN,
    vocab: Vocab,
    prime: list[str],
    config: SampleConfig,
    generator: Optional[torch.Generator] = None,
    seconds: Optional[float] = None,
    tempo: Optional[float] = None,
) -> list[list[str]]:
    """Event tokens for each sample: the prime, then new events until the piece ends.

    A sample ends when the model emits the piece-boundary token (the end of one
    piece is the start of the next), after `config.length` tokens, or, with
    `seconds`, where the new events (after the prime) reach that much music: the
    shift that gets there is shortened to end on it, so the last note starts within
    `seconds` (counted at `tempo` when the file will be written at one).
    """
    samples = [list(prime) for _ in range(config.num_samples)]
    done = [False] * config.num_samples
    prime_ids = vocab.encode(prime)
    prime_clock = Clock(vocab.version)
    for token in prime:
        prime_clock.read(token)  # the tempo where the prime ends: new music starts at it
    limits = [None if seconds is None else TimeLimit(seconds, vocab.version, prime_clock.bpm, tempo) for _ in samples]
    for ids in generate(model, prime_ids, config, generator):
        for i, token in enumerate(vocab.decode(ids)):
            if done[i]:
                continue
            if token == PIECE_TOKEN:
                done[i] = True
                continue
            if limits[i] is not None:
                token, done[i] = limits[i].take(token)
            if token is not None:
                samples[i].append(token)
        if all(done):
            break
    return samples
