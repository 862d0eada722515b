import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from chargen.data.batching import (
    batchify,
    fit_layout,
    get_window,
    num_windows,
    windows_per_epoch,
)
from chargen.errors import CorpusError


def test_batchify_layout_makes_contiguous_streams():
    ids = torch.arange(24)
    streams = batchify(ids, 4)
    assert streams.tolist()[1] == [6, 7, 8, 9, 10, 11]
    x, y = get_window(streams, 0, 3)
    assert x[1].tolist() == [6, 7, 8] and y[1].tolist() == [7, 8, 9]
    # the next window continues each row exactly where the last one stopped
    x, y = get_window(streams, 1, 3)
    assert x[1].tolist() == [9, 10] and y[1].tolist() == [10, 11]
    assert num_windows(streams, 3) == 2


def test_windows_cover_every_target_once():
    streams = batchify(torch.arange(100), 5)  # 20 columns
    targets = [y for w in range(num_windows(streams, 6)) for y in get_window(streams, w, 6)[1].T]
    covered = torch.stack(targets).T.flatten().tolist()
    assert sorted(covered) == sorted(streams[:, 1:].flatten().tolist())


@given(tokens=st.integers(2, 3000), batch_size=st.integers(1, 64), seq_len=st.integers(1, 200))
def test_windows_per_epoch_from_sizes_alone_counts_the_windows_training_walks(tokens, batch_size, seq_len):
    """What `chargen info` reports as epochs comes from a checkpoint's sizes: the same count as
    the windows get_window walks over the batchified ids."""
    if tokens // batch_size < 2:
        return  # batchify refuses such a corpus
    streams = batchify(torch.arange(tokens), batch_size)
    walked = 0
    while walked * seq_len < streams.shape[1] - 1:
        get_window(streams, walked, seq_len)
        walked += 1
    assert windows_per_epoch(tokens, batch_size, seq_len) == num_windows(streams, seq_len) == walked


def test_fit_layout_shrinks_for_short_corpora():
    assert fit_layout(100_000, 64, 128) == (64, 128)
    batch, seq = fit_layout(300, 64, 128)
    assert 300 // batch >= seq + 1 and seq >= 1
    with pytest.raises(CorpusError):
        fit_layout(1, 4, 4)
