"""Sampling: one prime in, many tokens out, one step at a time.

The prime is run through the model to set its hidden state, then each step
turns the last logits into a distribution (temperature, then top-k and top-p
filtering), draws one token per sample, and feeds it back in. All samples of a
call advance together as one batch.

    gen = torch.Generator().manual_seed(1)
    for ids in generate(model, prime_ids, SampleConfig(temperature=0.8), gen):
        ...  # ids: (num_samples,) the tokens drawn at this step
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from chargen.model import CharRNN
from chargen.vocab import Vocab


@dataclass
class SampleConfig:
    """How to draw tokens. Each field is the CLI option of the same name."""

    temperature: float = 1.0  # 0 means greedy: always the most likely token
    top_k: Optional[int] = None  # keep only the k most likely tokens
    top_p: Optional[float] = None  # keep the smallest set of tokens whose probability reaches p
    length: int = 1000  # tokens to generate after the prime
    num_samples: int = 1

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {self.length}")
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")


def filter_logits(logits: torch.Tensor, top_k: Optional[int] = None, top_p: Optional[float] = None) -> torch.Tensor:
    """Set to -inf every logit that top-k or top-p (nucleus, Holtzman et al. 2019) excludes.

    logits: (B, V). The most likely token always survives.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens strictly more likely already reach p.
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: torch.Tensor, config: SampleConfig, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token id per row of logits (B, V), drawn as `config` says."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: CharRNN,
    prime: torch.Tensor,
    config: SampleConfig,
    generator: Optional[torch.Generator] = None,
) -> Iterator[torch.Tensor]:
    """Yield the (num_samples,) token ids drawn at each step, `config.length` times.

    `prime` holds at least one token id; every sample starts from it.
    """
    assert prime.dim() == 1 and len(prime) > 0, "the prime must hold at least one token"
    model.eval()
    device = next(model.parameters()).device
    B = config.num_samples
    hidden = model.init_hidden(B)
    logits, hidden = model(prime.to(device).unsqueeze(0).expand(B, -1), hidden)  # (B, T, V)
    logits = logits[:, -1]
    for _ in range(config.length):
        ids = choose(logits, config, generator)
        yield ids
        logits, hidden = model(ids.unsqueeze(1), hidden)
        logits = logits[:, -1]


def generate_text(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    config: SampleConfig,
    generator: Optional[torch.Generator] = None,
    stop: Optional[str] = None,
) -> Iterator[list[str]]:
    """Yield, at each step, the new text of every sample ("" for one that has stopped).

    A sample ends at `stop` (which is not included). Text that might be the
    start of the stop string is held back until it is known not to be, so what
    is yielded can be printed at once.
    """
    prime_ids = vocab.encode(prime)
    streams = [_StopFilter(stop) for _ in range(config.num_samples)]
    for ids in generate(model, prime_ids, config, generator):
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
) -> list[list[str]]:
    """Event tokens for each sample: the prime, then new events until the piece ends.

    A sample ends when the model emits the piece-boundary token (the end of one
    piece is the start of the next), after `config.length` tokens, or, with
    `seconds`, once it holds that much music.
    """
    from chargen import midi

    samples = [list(prime) for _ in range(config.num_samples)]
    done = [False] * config.num_samples
    prime_ids = vocab.encode(prime)
    check_every = 32  # measuring duration walks the whole list: do it now and then
    for step, ids in enumerate(generate(model, prime_ids, config, generator), start=1):
        for i, token in enumerate(vocab.decode(ids)):
            if done[i]:
                continue
            if token == midi.PIECE_TOKEN:
                done[i] = True
            else:
                samples[i].append(token)
        if seconds is not None and step % check_every == 0:
            for i, sample in enumerate(samples):
                done[i] = done[i] or midi.tokens_duration(sample) >= seconds
        if all(done):
            break
    return samples
