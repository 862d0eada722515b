"""The language model: embedding -> stacked recurrent layers -> linear to the vocabulary.

One class covers the three recurrent cells of the literature, picked by name:
plain ``rnn`` (Elman), ``lstm`` (Hochreiter & Schmidhuber, 1997) and ``gru``
(Cho et al., 2014). The model knows nothing about files, vocabularies or
optimizers: it maps token ids and a hidden state to logits and a new hidden state.

Regularization for long runs on small corpora follows AWD-LSTM (Merity et al.,
2018), chosen so that every layer still runs as one fused recurrent kernel:
DropConnect on the recurrent weight matrices (``weight_drop``: one mask per
training step, the same for every stream and time step), and locked, or
variational, dropout (Gal & Ghahramani, 2016) on the embedding output
(``embed_dropout``) and between and after the layers (``locked_dropout``): one
mask per stream, the same at every time step of a window. At evaluation all of
them are off and the model is the plain stack.

    model = CharRNN(ModelConfig(vocab_size=65))
    logits, hidden = model(ids, model.init_hidden(batch_size=ids.shape[0]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import nn

from chargen.errors import ArgumentError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# An LSTM's hidden state is a pair (h, c); a GRU's or plain RNN's is h alone.
# Each tensor has shape (num_layers, batch, hidden_size).
Hidden = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ModelConfig:
    """The shape of a model. Stored in every checkpoint as a plain dict."""

    vocab_size: int
    cell: str = "lstm"  # lstm | gru | rnn
    num_layers: int = 2
    hidden_size: int = 512  # 2x512 beat 2x256 in a 10-minute, 2-core CPU budget (docs/benchmarks.md)
    embed_dim: int = 64  # characters carry little meaning alone; a small embedding suffices
    dropout: float = 0.0  # between recurrent layers and before the output layer; raise it for long runs on small corpora
    weight_drop: float = 0.0  # DropConnect on the recurrent weight matrices (AWD-LSTM)
    embed_dropout: float = 0.0  # locked dropout on the embedding output
    locked_dropout: float = 0.0  # locked dropout between recurrent layers and before the output layer

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ArgumentError("cell", f"must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embed_dim"):
            if getattr(self, name) < 1:
                raise ArgumentError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "weight_drop", "embed_dropout", "locked_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ArgumentError(name, f"must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class CharRNN(nn.Module):
    """A stacked LSTM, GRU or RNN language model over a token vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.rnn = CELLS[config.cell](
            input_size=config.embed_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        # PyTorch's own initialization, kept by measurement: a +1 forget-gate bias
        # (Jozefowicz et al., 2015) cost 0.2 bits/char at 800 steps on Tiny Shakespeare
        # and left some seeds' models unable to begin a text from the zero state (issue 19;
        # docs/benchmarks.md).

    def init_hidden(self, batch_size: int) -> Hidden:
        """A zero hidden state on the parameters' device and dtype."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = weight.new_zeros(shape)
        return (h, weight.new_zeros(shape)) if self.config.cell == "lstm" else h

    def forward(self, ids: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """Logits (B, T, V) for token ids (B, T), and the hidden state after the last step."""
        x = self.embedding(ids)  # (B, T, E)
        c = self.config
        if not self.training or not (c.weight_drop or c.embed_dropout or c.locked_dropout):
            out, hidden = self.rnn(x, hidden)  # (B, T, H): all layers in one call
            return self.head(self.drop(out)), hidden
        return self._regularized_forward(x, hidden)

    def _regularized_forward(self, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """The training forward pass with weight-drop and locked dropout, one fused layer at a time.

        Each layer runs the same kernel nn.LSTM/GRU/RNN calls (torch.lstm and its
        siblings), given the layer's weights with its recurrent matrix dropped out,
        so the parameters, and the checkpoint's names for them, stay those of self.rnn.
        """
        c, rnn = self.config, self.rnn
        function = {"lstm": torch.lstm, "gru": torch.gru, "rnn": torch.rnn_tanh}[c.cell]
        x = locked_dropout(x, c.embed_dropout)
        layers = []
        for layer in range(c.num_layers):
            w_hh = getattr(rnn, f"weight_hh_l{layer}")
            weights = [
                getattr(rnn, f"weight_ih_l{layer}"),
                F.dropout(w_hh, c.weight_drop) if c.weight_drop else w_hh,  # DropConnect, rescaled by 1/(1-p)
                getattr(rnn, f"bias_ih_l{layer}"),
                getattr(rnn, f"bias_hh_l{layer}"),
            ]
            h = map_hidden(lambda t: t[layer : layer + 1], hidden)  # this layer's (1, B, H) state
            # Arguments: input, hx, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first
            x, *state = function(x, h, weights, True, 1, 0.0, True, False, True)
            layers.append(tuple(state) if c.cell == "lstm" else state[0])
            if layer < c.num_layers - 1:
                x = F.dropout(x, c.dropout)  # nn.LSTM's own dropout between layers, as in the fused call
            x = locked_dropout(x, c.locked_dropout)
        if c.cell == "lstm":
            hidden = (torch.cat([s[0] for s in layers]), torch.cat([s[1] for s in layers]))
        else:
            hidden = torch.cat(layers)
        return self.head(self.drop(x)), hidden

    def num_parameters(self, embedding: bool = True) -> int:
        """Parameter count, with or without the embedding table (a lookup, not arithmetic)."""
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.embedding.weight.numel()


def locked_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout with one mask per stream, shared by every time step of x (B, T, F).

    A fresh mask per time step (plain dropout) disturbs a recurrent network's memory
    at every step; one mask per sequence drops the same features throughout, which
    regularizes without that noise (Gal & Ghahramani, 2016). Called only in training.
    """
    if p == 0:
        return x
    # The mask in fp32 (exact 1 / (1 - p)) even when x is bf16; the product is then fp32.
    mask = torch.empty(x.shape[0], 1, x.shape[2], device=x.device).bernoulli_(1 - p).div_(1 - p)  # (B, 1, F)
    return x * mask


def map_hidden(function: Callable[[torch.Tensor], torch.Tensor], hidden: Hidden) -> Hidden:
    """Apply `function` to each tensor of a hidden state, keeping its layout: the pair
    (h, c) of an LSTM stays a pair, the single tensor of a GRU or RNN stays one."""
    if isinstance(hidden, tuple):
        return tuple(function(h) for h in hidden)
    return function(hidden)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph behind the hidden state (the 'truncation' in truncated BPTT)."""
    return map_hidden(torch.Tensor.detach, hidden)
