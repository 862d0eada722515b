"""Which number format the arithmetic runs in: fp32, or bf16 where the hardware is fast at it.

bfloat16 keeps fp32's exponent range with an 8-bit mantissa, so products of bf16
numbers, summed in fp32, are accurate enough for training an RNN, and CPUs with
native bf16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``) and
recent GPUs run them several times faster than fp32 products. chargen uses bf16
as *mixed* precision only: the master weights, the optimizer state, the loss and
the hidden state carried between TBPTT windows stay fp32, and ``torch.autocast``
runs the matrix products (embedding lookups aside) in bf16.

    precision = choose_precision("auto", torch.device("cpu"))
    precision.name, precision.reason   # ("bf16", "the CPU computes bf16 natively (avx512_bf16)")
    with precision.autocast():
        logits, hidden = model(ids, hidden)

``auto`` picks bf16 only where a start-up probe finds it native *and* working
(a tiny bf16 LSTM forward pass, inside a try); everywhere else it picks fp32, so
a CPU without bf16 never crashes, nor crawls through emulated bf16.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from dataclasses import dataclass

import torch

from chargen.errors import ChargenError

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """A chosen precision: its name ("fp32" or "bf16"), why it was chosen, and the device."""

    name: str
    reason: str
    device_type: str = "cpu"

    @property
    def is_bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the products (fp32 weights are cast to it inside autocast)."""
        return torch.bfloat16 if self.is_bf16 else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """A context in which matrix products run in this precision (a no-op for fp32)."""
        if not self.is_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


FP32 = Precision("fp32", "asked for")


def choose_precision(requested: str, device: torch.device | str = "cpu") -> Precision:
    """Resolve --precision for a device: "auto" probes the hardware; "fp32" is always
    possible; "bf16" is honoured wherever bf16 works at all (slowly where emulated),
    and is a ChargenError where it does not work."""
    device_type = torch.device(device).type
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return Precision("fp32", "asked for", device_type)
    native, works, why = bf16_support(device_type)
    if requested == "bf16":
        if not works:
            raise ChargenError(f"--precision bf16 does not work on this {device_type}: {why}; use --precision fp32 or auto")
        note = "asked for" if native else f"asked for, but emulated here ({why}): expect it slower than fp32"
        return Precision("bf16", note, device_type)
    if native and works:
        return Precision("bf16", f"auto: {why}", device_type)
    return Precision("fp32", f"auto: {why}", device_type)


@functools.lru_cache(maxsize=None)
def bf16_support(device_type: str) -> tuple[bool, bool, str]:
    """(native, works, why) for bf16 on a device type, probed once per process.

    native: the hardware has bf16 instructions (or, on CUDA, torch says it supports bf16).
    works: a tiny bf16 LSTM forward pass ran and gave finite bf16 numbers.
    why: one phrase for the run header, saying what was found.
    """
    if device_type == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        why = "the GPU supports bf16" if native else "the GPU lacks bf16"
    elif device_type == "cpu":
        native, why = cpu_bf16_instructions()
        if native and not _mkldnn_bf16():
            native, why = False, f"the CPU has {why}, but this torch build's oneDNN cannot use it"
        elif native:
            why = f"the CPU computes bf16 natively ({why})"
        else:
            why = f"the CPU has no native bf16 ({why})"
    else:
        return False, False, f"bf16 is not probed on {device_type}"
    works, failure = _probe_forward(device_type)
    if not works:
        return native, False, f"a bf16 test pass failed ({failure})"
    return native, True, why


def cpu_bf16_instructions() -> tuple[bool, str]:
    """(has native bf16, the flags found or missing), from torch's CPU checks and /proc/cpuinfo."""
    flags = _cpuinfo_flags()
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return ("bf16" in flags, "bf16" if "bf16" in flags else "no bf16 flag")
    found = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    # torch's own checks, where this torch has them (private helpers, hence getattr).
    if not found and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        found.append("avx512_bf16")
    if found:
        return True, ", ".join(found)
    return False, "no avx512_bf16 or amx_bf16"


def _cpuinfo_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (x86 "flags", Arm "Features"); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def _mkldnn_bf16() -> bool:
    """Whether torch's oneDNN (the kernels behind nn.LSTM on CPU) runs bf16 here."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _probe_forward(device_type: str) -> tuple[bool, str]:
    """Run a 1-layer, 8-unit LSTM over 3 steps under bf16 autocast; (ok, failure)."""
    try:
        generator = torch.Generator().manual_seed(0)
        lstm = torch.nn.LSTM(4, 8, batch_first=True).to(device_type)
        x = torch.randn(2, 3, 4, generator=generator).to(device_type)
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16):
            out, _ = lstm(x)
        if not bool(torch.isfinite(out.float()).all()):
            return False, "non-finite output"
        return True, ""
    except Exception as e:  # noqa: BLE001 - any failure at all means: do not use bf16 here
        return False, f"{type(e).__name__}: {e}".splitlines()[0][:200]


def describe_cpu() -> dict:
    """The CPU's model name and its bf16/AMX flags, for benchmark tables."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    flags = _cpuinfo_flags()
    wanted = ("avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "bf16")
    return {"cpu": name, "bf16_flags": [f for f in wanted if f in flags]}
