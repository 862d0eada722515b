"""Drawing tokens: temperature, top-k and top-p filtering, and one draw per stream.

    config = SampleConfig(temperature=0.8, top_p=0.9)
    ids = choose(logits, config, generator)     # logits (B, V) -> ids (B,)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from chargen.arguments import LENGTH, SAMPLES, TEMPERATURE, TOP_K, TOP_P
from chargen.precision import PRECISIONS

DEFAULT_LENGTH = 1000  # tokens generated when neither a length nor (music) seconds is given

# Below this temperature, choose() shifts the logits before dividing, so they cannot overflow.
# Not always: the shift changes float rounding, and seeded samples at ordinary temperatures
# stay the same as they always were.
SHIFT_BELOW_TEMPERATURE = 1e-3
# Below the smallest normal float32, a temperature is 0 for every practical purpose: greedy.
GREEDY_BELOW_TEMPERATURE = torch.finfo(torch.float32).tiny


@dataclass
class SampleConfig:
    """How to draw tokens. Each field is the CLI option of the same name."""

    temperature: float = 1.0  # 0 means greedy: always the most likely token
    top_k: Optional[int] = None  # keep only the k most likely tokens
    top_p: Optional[float] = None  # keep the smallest set of tokens whose probability reaches p
    length: int = DEFAULT_LENGTH  # tokens to generate after the prime
    num_samples: int = 1
    precision: str = "auto"  # auto | fp32 | bf16: bf16 products where the hardware has them (precision.py)

    def __post_init__(self):  # the ranges of chargen/arguments.py, as everywhere else
        self.temperature = TEMPERATURE.check(self.temperature)
        if self.top_k is not None:
            TOP_K.check(self.top_k)
        if self.top_p is not None:
            self.top_p = TOP_P.check(self.top_p)
        LENGTH.check(self.length)
        SAMPLES.check(self.num_samples, "num_samples")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def sample_config(temperature, top_k, top_p, length, n, precision: str = "auto") -> SampleConfig:
    """A SampleConfig from the Python API's arguments, or an ArgumentError naming the one out of
    range (`n`, as the API calls num_samples)."""
    SAMPLES.check(n)
    return SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p, length=length, num_samples=n,
                        precision=precision)


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
    if config.temperature < GREEDY_BELOW_TEMPERATURE:  # 0, or too small for a float to divide by
        return logits.argmax(dim=-1)
    if config.temperature < SHIFT_BELOW_TEMPERATURE:
        # logits / 1e-45 overflows to inf, and softmax of inf is NaN. Shifted so the largest
        # logit is 0, the division can only push the others towards -inf: an exact, finite
        # distribution for every positive temperature.
        logits = logits - logits.max(dim=-1, keepdim=True).values
    logits = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    # Inverse-CDF draw: one uniform number per row, located in the cumulative probabilities.
    # Same distribution as torch.multinomial, which validates its input first and measured
    # 2x slower for one stream and 12x for 64 (docs/benchmarks.md). A filtered token has
    # probability 0, an empty interval of the CDF, so searchsorted(right=True) never picks it.
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[1] - 1)
