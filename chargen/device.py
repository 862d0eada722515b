"""Devices in one place: which device a name means, how two devices compare, and random
numbers drawn on a device.

    device = resolve_device("auto")            # cuda:0 when a GPU is there, else cpu
    same_device(state.device, device)          # cuda and cuda:0 are the same GPU
    generator = random_generator(device, 7)    # a seeded torch.Generator on that device

torch names one GPU two ways: torch.device("cuda") (whichever GPU is current) and
torch.device("cuda:0"), and the two compare unequal although a tensor made on the
first reports the second. So a device is normalized once, here, to carry its index,
and devices are compared only through same_device().

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
    """The device `name` means, normalized (see normalize_device): 'auto' picks CUDA when
    available, else the CPU; 'cuda' without a GPU is a ChargenError."""
    if not isinstance(name, (str, torch.device)):
        raise ArgumentError("device", f"must be auto, cpu or cuda, got {name!r}")
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ChargenError("--device cuda was asked for, but no CUDA GPU is available")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ArgumentError("device", f"must be auto, cpu or cuda, got {name!r}") from e
    return normalize_device(device)


def normalize_device(device: str | torch.device) -> torch.device:
    """`device` as the tensors on it report theirs: a GPU with its index (cuda -> cuda:0,
    the current GPU), the CPU without one."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.type == "cpu":
        return torch.device("cpu")  # "cpu:0" is the same CPU
    return device


def same_device(a: str | torch.device, b: str | torch.device) -> bool:
    """Whether two devices are one: cuda and cuda:0 are (when GPU 0 is current), cpu and cuda are not."""
    return normalize_device(a) == normalize_device(b)


def random_generator(device: torch.device, seed: Optional[int] = None) -> torch.Generator:
    """A torch.Generator on `device`, seeded with `seed` (fresh OS randomness when None).

    The same seed gives the same numbers on the same device; a CPU and a GPU
    generator give different streams for one seed.
    """
    seed = int.from_bytes(os.urandom(6), "little") if seed is None else SEED.check(seed)
    return torch.Generator(device=device).manual_seed(seed)
