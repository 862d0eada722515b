"""One sampling step written out by hand: the model's arithmetic without nn.LSTM's per-call cost.

    step = FusedStep(model, hidden, torch.bfloat16)
    logits = step(ids)      # ids (B,) -> logits (B, V); the hidden state advances in place

See FusedStep for why, and docs/benchmarks.md for what it bought.
"""

from __future__ import annotations

from typing import Optional

import torch

from chargen.model import CharRNN, Hidden, map_hidden

# FusedStep keeps an output layer of up to this many fp32 bytes in fp32 under bf16: 512 x 65
# took 5 us in fp32 and 16 us through oneDNN's bf16 call on a Zen 5 core (docs/benchmarks.md).
SMALL_HEAD_BYTES = 256 * 1024


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
        rows = _lstm_gate_order(H, self.h.device) if self.cell == "lstm" else slice(None)
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


def _lstm_gate_order(H: int, device: torch.device) -> torch.Tensor:
    """Row indices, on `device`, that reorder an LSTM's (i, f, g, o) gate blocks of H rows to (i, f, o, g)."""
    blocks = [(0, 2 * H), (3 * H, 4 * H), (2 * H, 3 * H)]
    return torch.cat([torch.arange(start, end, device=device) for start, end in blocks])


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
