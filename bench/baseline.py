"""The baseline chargen is measured against: the textbook PyTorch loop, nothing clever.

This is what a character-level language model looks like in the PyTorch
examples (word_language_model): embedding -> nn.LSTM/nn.GRU -> linear, Adam,
gradient clipping, a detached hidden state carried between windows; and a
sampling loop that calls the module once per generated character. With
``bf16=True`` both run their forward passes under ``torch.autocast`` in bfloat16,
the textbook way to use bf16 (the PyTorch AMP recipe), so chargen's bf16 rows
are compared with the textbook loop in the same precision. It imports
nothing from chargen.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


class BaselineRNN(nn.Module):
    def __init__(self, vocab_size: int, cell: str, num_layers: int, hidden_size: int, embed_dim: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](embed_dim, hidden_size, num_layers, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(self.embedding(x), hidden)
        return self.head(self.drop(out)), hidden


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def make_train_step(model: BaselineRNN, lr: float = 2e-3, clip: float = 1.0, bf16: bool = False):
    """A closure doing one textbook training step on (x, y); returns the loss as a float."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    state = {"hidden": None}

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        model.train()
        hidden = None if state["hidden"] is None else detach(state["hidden"])
        with autocast(bf16):
            logits, state["hidden"] = model(x, hidden)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        return loss.item()

    return step


@torch.no_grad()
def sample(model: BaselineRNN, prime: torch.Tensor, length: int, num_samples: int = 1, temperature: float = 1.0,
           bf16: bool = False):
    """The naive loop: one module call per character, softmax, multinomial."""
    model.eval()
    with autocast(bf16):
        logits, hidden = model(prime.unsqueeze(0).expand(num_samples, -1))
        out = []
        for _ in range(length):
            ids = torch.multinomial((logits[:, -1].float() / temperature).softmax(-1), 1)  # (B, 1)
            out.append(ids)
            logits, hidden = model(ids, hidden)
    return torch.cat(out, 1)
