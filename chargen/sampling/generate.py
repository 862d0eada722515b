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

import contextlib
import copy
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from chargen.music.vocabulary import PIECE_TOKEN, tokens_duration
from chargen.model import CharRNN, Hidden, map_hidden
from chargen.precision import FP32, PRECISIONS, Precision, choose_precision
from chargen.sampling.threads import StepThreads
from chargen.vocab import Vocab


PARALLEL_STREAMS = 16  # from this many streams up, sampling steps run the model itself, on all threads
# Below this temperature, choose() shifts the logits before dividing, so they cannot overflow.
# Not always: the shift changes float rounding, and seeded samples at ordinary temperatures
# stay the same as they always were.
SHIFT_BELOW_TEMPERATURE = 1e-3
# Below the smallest normal float32, a temperature is 0 for every practical purpose: greedy.
GREEDY_BELOW_TEMPERATURE = torch.finfo(torch.float32).tiny
# FusedStep keeps an output layer of up to this many fp32 bytes in fp32 under bf16: 512 x 65
# took 5 us in fp32 and 16 us through oneDNN's bf16 call on a Zen 5 core (docs/benchmarks.md).
SMALL_HEAD_BYTES = 256 * 1024


@dataclass
class SampleConfig:
    """How to draw tokens. Each field is the CLI option of the same name."""

    temperature: float = 1.0  # 0 means greedy: always the most likely token
    top_k: Optional[int] = None  # keep only the k most likely tokens
    top_p: Optional[float] = None  # keep the smallest set of tokens whose probability reaches p
    length: int = 1000  # tokens to generate after the prime
    num_samples: int = 1
    precision: str = "auto"  # auto | fp32 | bf16: bf16 products where the hardware has them (precision.py)

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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


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


class FusedStep:
    """One sampling step of the model for a batch of token ids, written out by hand.

    Why not call the model: nn.LSTM/GRU/RNN run on a (B, 1) input spend most of
    their time in per-call setup (weight layout checks, the oneDNN or native RNN
    dispatch, allocating outputs), not arithmetic, so sampling with them is slow
    (see docs/benchmarks.md). This step does only the arithmetic, from the model's
    own weights, and is equal to ``model(ids.unsqueeze(1), hidden)`` to float
    tolerance (tests/test_sample.py checks every cell):

    - layer 1's input projection is a row lookup: embedding @ W_ih^T + biases is
      a (V, G*H) table computed once (G gates: 4 for LSTM, 3 for GRU, 1 for RNN);
    - every other product is one addmm into a preallocated buffer;
    - gate nonlinearities run in place, and the hidden state is updated in place.

    With ``dtype=torch.bfloat16`` the products read bf16 copies of the weights,
    packed once for oneDNN (see Bf16Linear): half the bytes per character, which
    is what bounds one stream (every weight is read once per step). The lookup
    table, the gate math and the hidden state stay fp32.

    The weights are read when the step is built: build a new one after training more.
    """

    def __init__(self, model: CharRNN, hidden: Hidden, dtype: torch.dtype = torch.float32):
        config, rnn = model.config, model.rnn
        self.cell = config.cell
        self.bf16 = dtype == torch.bfloat16
        hidden = map_hidden(lambda h: h.float().clone(), hidden)
        self.h, self.c = hidden if self.cell == "lstm" else (hidden, None)
        L, B, H = self.h.shape
        G = {"lstm": 4, "gru": 3, "rnn": 1}[self.cell]
        # GRU keeps the recurrent bias apart: its candidate gate multiplies it by r.
        fold_hh = self.cell != "gru"
        # An LSTM's gate rows come as (input, forget, candidate, output); reordered to
        # (input, forget, output, candidate), the three sigmoid gates are one slice.
        rows = _lstm_gate_order(H) if self.cell == "lstm" else slice(None)
        self.layers = []
        for layer in range(L):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}")[rows], getattr(rnn, f"weight_hh_l{layer}")[rows]
            b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}")[rows], getattr(rnn, f"bias_hh_l{layer}")[rows]
            b_in = b_ih + b_hh if fold_hh else b_ih
            if layer == 0:
                w_in = torch.addmm(b_in, model.embedding.weight, w_ih.t())  # (V, G*H) lookup table
                if self.bf16:
                    self.layers.append((w_in, Bf16Linear(w_hh, None if fold_hh else b_hh, B)))
                    continue
            elif self.bf16:
                if fold_hh:  # one product of [x, h] with [W_ih, W_hh]: one weight read, one call
                    self.layers.append((Bf16Linear(torch.cat([w_ih, w_hh], dim=1), b_in, B), None))
                else:
                    self.layers.append((Bf16Linear(w_ih, b_in, B), Bf16Linear(w_hh, b_hh, B)))
                continue
            else:
                w_in = w_ih.t().contiguous()  # (H, G*H): contiguous for a fast addmm
            self.layers.append((w_in, b_in, w_hh.t().contiguous(), None if fold_hh else b_hh))
        # The output layer in bf16 only when it is big: a small one (a character vocabulary)
        # fits in the core's cache, where oneDNN's bf16 call costs more than the fp32 product.
        self.head = None
        if self.bf16 and model.head.weight.numel() * 4 > SMALL_HEAD_BYTES:
            self.head = Bf16Linear(model.head.weight, model.head.bias, B)
        else:
            self.head_w, self.head_b = model.head.weight.t().contiguous(), model.head.bias
        self.signature = (self.cell, str(dtype), L, B, H, config.vocab_size)  # what its speed depends on
        self.gates = self.h.new_empty(B, G * H)  # (B, G*H) input + recurrent pre-activations
        self.gates_hh = self.h.new_empty(B, G * H) if self.cell == "gru" else None
        self.logits = self.h.new_empty(B, config.vocab_size)
        # Views into the state and the buffers, made once: slicing a tensor costs a few
        # microseconds, and a step would otherwise slice some twenty times.
        self.h_layers = self.h.unbind(0)
        self.c_layers = self.c.unbind(0) if self.c is not None else None
        g, gh = self.gates, self.gates_hh
        if self.cell == "lstm":
            self.sigmoid_gates, self.candidate = g[:, : 3 * H], g[:, 3 * H :]
            self.input_gate, self.forget_gate, self.output_gate = g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H]
        elif self.cell == "gru":
            self.reset_update, self.reset_update_hh = g[:, : 2 * H], gh[:, : 2 * H]
            self.reset_gate, self.update_gate = g[:, :H], g[:, H : 2 * H]
            self.candidate, self.candidate_hh = g[:, 2 * H :], gh[:, 2 * H :]
        if self.bf16:  # the bf16 inputs of the products
            self.row_bf16 = self.h.new_empty(B, H, dtype=torch.bfloat16)  # h (layer 1; a GRU's x and h)
            self.xh = self.h.new_empty(B, 2 * H, dtype=torch.bfloat16)  # [x, h] of an LSTM's or RNN's layers 2+
            self.x_half, self.h_half = self.xh[:, :H], self.xh[:, H:]

    @property
    def state(self) -> list[torch.Tensor]:
        """The tensors a step updates in place (h, and c for an LSTM)."""
        return [self.h] if self.c is None else [self.h, self.c]

    @property
    def hidden(self) -> Hidden:
        """The current hidden state, in the model's layout (fp32)."""
        return (self.h, self.c) if self.cell == "lstm" else self.h

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        """Advance every stream by its token in ids (B,); return the next logits (B, V), a reused buffer."""
        x = None
        for layer, h in enumerate(self.h_layers):
            # The pre-activations: gates = input part + recurrent part (GRU: its recurrent part apart).
            if self.bf16:
                self._bf16_products(layer, ids, x, h)
            else:
                self._fp32_products(layer, ids, x, h)
            if self.cell == "lstm":  # gates in the order (input, forget, output, candidate)
                self.sigmoid_gates.sigmoid_()
                self.candidate.tanh_()
                c = self.c_layers[layer]
                c.mul_(self.forget_gate).addcmul_(self.input_gate, self.candidate)
                torch.tanh(c, out=h)
                h.mul_(self.output_gate)
            elif self.cell == "gru":
                self.reset_update.add_(self.reset_update_hh).sigmoid_()
                n = self.candidate.addcmul_(self.reset_gate, self.candidate_hh).tanh_()
                h.sub_(n).mul_(self.update_gate).add_(n)  # h' = (1 - z) * n + z * h
            else:
                torch.tanh(self.gates, out=h)
            x = h
        if self.head is not None:
            return self.logits.copy_(self.head(x.to(torch.bfloat16)))
        return torch.addmm(self.head_b, x, self.head_w, out=self.logits)

    def _fp32_products(self, layer, ids, x, h) -> None:
        """Fill self.gates (and, for a GRU, self.gates_hh) with fp32 products."""
        w_in, b_in, w_hh, b_hh = self.layers[layer]
        if layer == 0:
            torch.index_select(w_in, 0, ids, out=self.gates)
        else:
            torch.addmm(b_in, x, w_in, out=self.gates)
        if self.cell == "gru":
            torch.addmm(b_hh, h, w_hh, out=self.gates_hh)
        else:
            self.gates.addmm_(h, w_hh)

    def _bf16_products(self, layer, ids, x, h) -> None:
        """As _fp32_products, with the products in bf16 (accumulated in fp32 by oneDNN)."""
        first, second = self.layers[layer]
        if layer == 0:  # first: the fp32 lookup table; second: the recurrent product
            torch.index_select(first, 0, ids, out=self.gates)
            recurrent = second(self.row_bf16.copy_(h))
        elif second is None:  # LSTM, RNN: one product of [x, h]
            self.x_half.copy_(x)
            self.h_half.copy_(h)
            self.gates.copy_(first(self.xh))
            return
        else:  # GRU: input and recurrent products apart
            self.gates.copy_(first(self.row_bf16.copy_(x)))
            recurrent = second(self.row_bf16.copy_(h))
        if self.cell == "gru":
            self.gates_hh.copy_(recurrent)
        else:
            self.gates.add_(recurrent)


def _lstm_gate_order(H: int) -> torch.Tensor:
    """Row indices that reorder an LSTM's (i, f, g, o) gate blocks of H rows to (i, f, o, g)."""
    return torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])


class Bf16Linear:
    """x @ W^T + b in bf16, W converted once and packed for oneDNN's bf16 matrix kernels.

    A plain bf16 torch.addmm of one row measured about 2.6x slower than fp32 on a Zen 5
    CPU (a generic path), while oneDNN's packed bf16 product took about half the fp32
    time. The packing ops are private to torch (torch.compile's CPU backend emits the
    same two), so where they are missing or fail, the plain bf16 linear is used: slower,
    never wrong.
    """

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], batch_size: int):
        self.weight = weight.detach().to(torch.bfloat16).contiguous()  # (out, in)
        self.bias = None if bias is None else bias.detach().to(torch.bfloat16)
        self.packed = None
        if self.weight.device.type == "cpu" and _packed_bf16_available():
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, batch_size)
                probe = torch.zeros(batch_size, self.weight.shape[1], dtype=torch.bfloat16)
                torch.ops.mkldnn._linear_pointwise(probe, packed, self.bias, "none", [], "")
                self.packed = packed
            except (RuntimeError, AttributeError):
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) bf16 -> (B, out) bf16."""
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return torch.nn.functional.linear(x, self.weight, self.bias)


def _packed_bf16_available() -> bool:
    mkldnn = torch.ops.mkldnn
    try:
        return hasattr(mkldnn, "_reorder_linear_weight") and hasattr(mkldnn, "_linear_pointwise")
    except RuntimeError:
        return False


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
        # hand-fused step, on one thread or all: whichever a timing finds faster
        # (stepthreads.py; a busy second core makes more threads 20x slower).
        step = StepThreads(FusedStep(model, hidden, precision.dtype), config.length)
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
    products. Neither input is modified."""
    model.eval()
    with precision.autocast():
        logits, hidden = model(ids, hidden)
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
) -> list[list[str]]:
    """Event tokens for each sample: the prime, then new events until the piece ends.

    A sample ends when the model emits the piece-boundary token (the end of one
    piece is the start of the next), after `config.length` tokens, or, with
    `seconds`, once the new events (after the prime) hold that much music.
    """
    samples = [list(prime) for _ in range(config.num_samples)]
    done = [False] * config.num_samples
    prime_ids = vocab.encode(prime)
    prime_seconds = tokens_duration(prime, vocab.version)  # --seconds counts the new music only
    check_every = 32  # measuring duration walks the whole list: do it now and then
    for step, ids in enumerate(generate(model, prime_ids, config, generator), start=1):
        for i, token in enumerate(vocab.decode(ids)):
            if done[i]:
                continue
            if token == PIECE_TOKEN:
                done[i] = True
            else:
                samples[i].append(token)
        if seconds is not None and step % check_every == 0:
            for i, sample in enumerate(samples):
                done[i] = done[i] or tokens_duration(sample, vocab.version) - prime_seconds >= seconds
        if all(done):
            break
    return samples
