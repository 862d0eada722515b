import pytest
import torch

from chargen.data.batching import batchify, fit_layout, get_window, num_windows
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


def test_fit_layout_shrinks_for_short_corpora():
    assert fit_layout(100_000, 64, 128) == (64, 128)
    batch, seq = fit_layout(300, 64, 128)
    assert 300 // batch >= seq + 1 and seq >= 1
    with pytest.raises(CorpusError):
        fit_layout(1, 4, 4)
