"""Batching for truncated backpropagation through time (TBPTT): ids -> streams -> windows.

A corpus is one long id sequence. Training cuts it into `batch_size` contiguous
streams and walks them window by window, carrying the hidden state from one
window to the next (see chargen.training.loop):

    streams = batchify(corpus.train, batch_size=16)        # (16, N)
    for w in range(num_windows(streams, seq_len=64)):
        x, y = get_window(streams, w, seq_len=64)          # (16, <=64) each
"""

from __future__ import annotations

import torch

from chargen.errors import CorpusError


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id sequence into `batch_size` contiguous streams, shape (B, N).

    With ids a..x and batch_size 4, each row continues where it left off from
    one training window to the next, so the hidden state carried between
    windows always belongs to the text that came just before:

        row 0:  a b c d e f      window 0 = columns 0..2, window 1 = columns 3..5
        row 1:  g h i j k l
        row 2:  m n o p q r
        row 3:  s t u v w x

    The tail that does not fill a whole column is dropped.
    """
    n = len(ids) // batch_size
    if n < 2:
        raise CorpusError(
            f"the corpus has {len(ids)} tokens, too few for {batch_size} streams; "
            "use a smaller --batch-size or a longer corpus"
        )
    return ids[: n * batch_size].view(batch_size, n)


def fit_layout(num_tokens: int, batch_size: int, seq_len: int) -> tuple[int, int]:
    """Shrink batch size, then window length, so a short corpus still gives full windows.

    Returns (batch_size, seq_len); equal to the inputs whenever the corpus is
    long enough for one window per stream.
    """
    if num_tokens < 2:
        raise CorpusError(f"the corpus has {num_tokens} training tokens; at least 2 are needed")
    while batch_size > 1 and num_tokens // batch_size < seq_len + 1:
        batch_size //= 2
    seq_len = min(seq_len, num_tokens // batch_size - 1)
    return batch_size, seq_len


def num_windows(streams: torch.Tensor, seq_len: int) -> int:
    """Windows in one epoch of streams (B, N)."""
    return windows_per_epoch(streams.numel(), streams.shape[0], seq_len)


def windows_per_epoch(num_tokens: int, batch_size: int, seq_len: int) -> int:
    """Windows in one epoch over `num_tokens` ids cut into `batch_size` streams, from the sizes
    alone (all a checkpoint records): every input position but the last column is covered once."""
    columns = num_tokens // batch_size  # as batchify cuts them
    return -(-(columns - 1) // seq_len)


def get_window(streams: torch.Tensor, index: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets (B, T) of window `index`; the last one may be shorter."""
    i = index * seq_len
    T = min(seq_len, streams.shape[1] - 1 - i)
    assert T > 0, f"window {index} is past the end of the streams"
    window = streams[:, i : i + T + 1].long()
    return window[:, :-1], window[:, 1:]
