"""Validation: bits per token of held-out text, on one measure every time, and from a cold start.

Two figures, both in bits per token (per character, for text):

- evaluate(): the held-out ids cut into `batch_size` streams (data.batching.batchify),
  each read once from the zero state and carried window by window, as in training.
  With `max_tokens` it reads only the first windows of **every** stream: a subset spread
  evenly over the held-out set and the same at every validation of a run, so that best.pt
  is chosen on one measure. (A prefix is not a fair sample: Tiny Shakespeare's first 50,000
  held-out characters scored 0.045 bits/char below all 111,000, the first windows of its
  16 streams 0.017 above; docs/benchmarks.md.) validate() goes on to the end in the same
  pass when asked, for the whole set's figure too.
- cold_start(): the first PASSAGE_TOKENS tokens of up to PASSAGES held-out passages, each
  read from the zero state, as a sample begins. In the usual figure almost every token is
  predicted from a warm state, so a model that writes noise from its start state can still
  score well there (issue 19: 2.48 bits/char usual, 3.95 cold). For text a passage starts
  at the newline that ends a blank line: that newline is the context, as it is the default
  prime of `chargen sample`.

    bits = evaluate(model, corpus.val, batch_size=16, seq_len=64, max_tokens=200_000)
    cold = cold_start(model, cold_passages(corpus.val, corpus.vocab))
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from chargen.data.batching import batchify, get_window, num_windows
from chargen.model import CharRNN, Hidden, map_hidden
from chargen.precision import FP32, Precision
from chargen.training.distributed import World
from chargen.vocab import Vocab

LN2 = math.log(2.0)
PASSAGES = 128  # passages per cold-start figure: 25,600 tokens, a quarter of a Tiny Shakespeare validation
PASSAGE_TOKENS = 200  # tokens scored per passage, after its first (the context)
MIN_PASSAGES = 16  # fewer blank lines than this: passages start at every line, else evenly spaced
PASSAGE_BATCH = 64  # passages read side by side


@torch.no_grad()
def evaluate(
    model: CharRNN,
    ids: torch.Tensor,
    batch_size: int,
    seq_len: int,
    max_tokens: Optional[int] = None,
    world: Optional[World] = None,
    precision: Precision = FP32,
) -> float:
    """Mean negative log-likelihood of `ids` under the model, in bits per token.

    The hidden state starts at zeros and is carried across windows, as in training,
    and in fp32 between windows; the products run in `precision`, the loss in fp32.
    With `max_tokens`, only the first windows of every stream, about that many tokens in all.
    With several ranks, each evaluates its share of the streams and the sums are combined.
    """
    return validate(model, ids, batch_size, seq_len, max_tokens, world, precision)[0]


@torch.no_grad()
def validate(
    model: CharRNN,
    ids: torch.Tensor,
    batch_size: int,
    seq_len: int,
    max_tokens: Optional[int] = None,
    world: Optional[World] = None,
    precision: Precision = FP32,
    whole: bool = False,
) -> tuple[float, Optional[float]]:
    """(bits on the first windows of every stream, as evaluate(); bits on all of `ids` when
    `whole`, else None). The first figure is a part of the second's pass: one reading gives both."""
    world = world or World()
    streams = _evaluation_streams(ids, batch_size)
    if streams is None:
        return math.nan, (math.nan if whole else None)
    device = next(model.parameters()).device
    batch_size = len(streams)
    windows = num_windows(streams, seq_len)
    subset = _subset_windows(streams, seq_len, max_tokens)
    streams = streams[world.rows(batch_size)].to(device)  # all rows in one process
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(len(streams))
    sums = torch.zeros(2, 2, dtype=torch.float64)  # rows: subset, all; columns: bits (nats), tokens
    for w in range((windows if whole else subset) if len(streams) else 0):
        x, y = get_window(streams, w, seq_len)
        with precision.autocast():
            logits, hidden = model(x, hidden)
        hidden = to_fp32(hidden)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        sums[1] += torch.tensor([loss, y.numel()], dtype=torch.float64)
        if w < subset:
            sums[0] += torch.tensor([loss, y.numel()], dtype=torch.float64)
    model.train(was_training)
    sums = world.gather_floats(*sums.flatten().tolist()).sum(dim=0).view(2, 2)
    bits = (sums[:, 0] / sums[:, 1] / LN2).tolist()
    return bits[0], (bits[1] if whole else None)


def scored_targets(ids: torch.Tensor, batch_size: int, seq_len: int, max_tokens: Optional[int] = None) -> torch.Tensor:
    """The tokens evaluate() predicts (with `max_tokens`, those of its subset), flattened: with
    them a per-token figure becomes one per anything else, such as bits per note."""
    streams = _evaluation_streams(ids, batch_size)
    if streams is None:
        return ids[:0]
    return streams[:, 1 : 1 + _subset_windows(streams, seq_len, max_tokens) * seq_len].flatten()


def _evaluation_streams(ids: torch.Tensor, batch_size: int) -> Optional[torch.Tensor]:
    """The streams (B, N) evaluate() reads `ids` in; None when there is nothing to score."""
    if len(ids) < 2:
        return None
    return batchify(ids, max(1, min(batch_size, (len(ids) - 1) // 2)))


def _subset_windows(streams: torch.Tensor, seq_len: int, max_tokens: Optional[int]) -> int:
    """How many windows of every stream make the subset of about `max_tokens` tokens (all without)."""
    windows = num_windows(streams, seq_len)
    return windows if max_tokens is None else min(windows, -(-max_tokens // (len(streams) * seq_len)))


def cold_passages(ids: torch.Tensor, vocab: Vocab) -> torch.Tensor:
    """The passages the cold-start figure reads, (P, 1 + PASSAGE_TOKENS) token ids, P <= PASSAGES.

    In text with newlines, a passage starts at each newline that ends a blank line, or,
    where there are fewer than MIN_PASSAGES of those, at each newline; otherwise (music, or
    text without lines) at evenly spaced positions. Up to PASSAGES of them, evenly chosen.
    Shorter than PASSAGE_TOKENS when `ids` is; empty when it has under 2 tokens.
    """
    length = min(PASSAGE_TOKENS, len(ids) - 1)
    if length < 1:
        return torch.zeros(0, 2, dtype=torch.long)
    ids = ids.long()
    newline = vocab.index.get("\n") if vocab.kind == "text" else None
    last = len(ids) - length - 1  # a passage at i reads ids[i : i + length + 1]
    starts = torch.zeros(0, dtype=torch.long)
    if newline is not None:
        is_newline = ids[: last + 1] == newline
        blank = torch.nonzero(is_newline[1:] & is_newline[:-1]).flatten() + 1  # the second newline
        starts = blank if len(blank) >= MIN_PASSAGES else torch.nonzero(is_newline).flatten()
    if len(starts) < MIN_PASSAGES:
        starts = torch.linspace(0, last, min(PASSAGES, last + 1)).round().long().unique()
    if len(starts) > PASSAGES:
        starts = starts[torch.arange(PASSAGES) * len(starts) // PASSAGES]
    return torch.stack([ids[i : i + length + 1] for i in starts.tolist()])


@torch.no_grad()
def cold_start(
    model: CharRNN, passages: torch.Tensor, world: Optional[World] = None, precision: Precision = FP32
) -> float:
    """Bits per token of `passages` (from cold_passages), each read from the zero state: its
    first token is the context, the rest are scored. NaN when there are none. With several
    ranks, each reads its share of the passages and the sums are combined."""
    world = world or World()
    device = next(model.parameters()).device
    mine = passages[world.rank :: world.size].to(device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in mine.split(PASSAGE_BATCH):
        with precision.autocast():
            logits, _ = model(batch[:, :-1], model.init_hidden(len(batch)))
        total += F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    model.train(was_training)
    total, count = world.gather_floats(total, count).sum(dim=0).tolist()
    return total / count / LN2 if count else math.nan


def to_fp32(hidden: Hidden) -> Hidden:
    """The hidden state in fp32 (bf16 products leave it in bf16); fp32 tensors pass unchanged."""
    return map_hidden(torch.Tensor.float, hidden)
