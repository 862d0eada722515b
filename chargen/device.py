"""Devices in one place: which device a name means, and random numbers drawn on it.

    device = resolve_device("auto")            # cuda when a GPU is there, else cpu
    generator = random_generator(device, 7)    # a seeded torch.Generator on that device

Sampling draws its random numbers with torch.rand(..., generator=g, device=logits.device),
and torch requires the generator to live on the same device as the tensor it fills: a CPU
generator against CUDA logits fails. So every generator is made here, for the device of
the model that will use it.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from chargen.arguments import SEED
from chargen.errors import ArgumentError, ChargenError


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' picks CUDA when available, else the CPU; 'cuda' without a GPU is a ChargenError."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ChargenError("--device cuda was asked for, but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise ArgumentError("device", f"must be auto, cpu or cuda, got {name!r}") from e


def random_generator(device: torch.device, seed: Optional[int] = None) -> torch.Generator:
    """A torch.Generator on `device`, seeded with `seed` (fresh OS randomness when None).

    The same seed gives the same numbers on the same device; a CPU and a GPU
    generator give different streams for one seed.
    """
    seed = int.from_bytes(os.urandom(6), "little") if seed is None else SEED.check(seed)
    return torch.Generator(device=device).manual_seed(seed)
