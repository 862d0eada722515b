"""The language model: embedding -> stacked recurrent layers -> linear to the vocabulary.

One class covers the three recurrent cells of the literature, picked by name:
plain ``rnn`` (Elman), ``lstm`` (Hochreiter & Schmidhuber, 1997) and ``gru``
(Cho et al., 2014). The model knows nothing about files, vocabularies or
optimizers: it maps token ids and a hidden state to logits and a new hidden state.

    model = CharRNN(ModelConfig(vocab_size=65))
    logits, hidden = model(ids, model.init_hidden(batch_size=ids.shape[0]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable, Union

import torch
from torch import nn

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

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

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
        self._init_weights()

    def _init_weights(self):
        """Start LSTM forget gates at bias 1 so memory is kept early in training.

        (Jozefowicz et al., 2015.) PyTorch orders LSTM gates as input, forget,
        cell, output, and has two bias vectors per layer, so each gets +0.5.
        """
        if self.config.cell == "lstm":
            H = self.config.hidden_size
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias"):
                    with torch.no_grad():
                        param[H : 2 * H].fill_(0.5)

    def init_hidden(self, batch_size: int) -> Hidden:
        """A zero hidden state on the parameters' device and dtype."""
        weight = self.head.weight
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = weight.new_zeros(shape)
        return (h, weight.new_zeros(shape)) if self.config.cell == "lstm" else h

    def forward(self, ids: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """Logits (B, T, V) for token ids (B, T), and the hidden state after the last step."""
        x = self.embedding(ids)  # (B, T, E)
        out, hidden = self.rnn(x, hidden)  # (B, T, H)
        return self.head(self.drop(out)), hidden

    def num_parameters(self, embedding: bool = True) -> int:
        """Parameter count, with or without the embedding table (a lookup, not arithmetic)."""
        n = sum(p.numel() for p in self.parameters())
        return n if embedding else n - self.embedding.weight.numel()


def map_hidden(function: Callable[[torch.Tensor], torch.Tensor], hidden: Hidden) -> Hidden:
    """Apply `function` to each tensor of a hidden state, keeping its layout: the pair
    (h, c) of an LSTM stays a pair, the single tensor of a GRU or RNN stays one."""
    if isinstance(hidden, tuple):
        return tuple(function(h) for h in hidden)
    return function(hidden)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph behind the hidden state (the 'truncation' in truncated BPTT)."""
    return map_hidden(torch.Tensor.detach, hidden)
