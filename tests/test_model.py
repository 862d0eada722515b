import pytest
import torch
from conftest import TINY_MODEL, tiny_model

from chargen.model import CharRNN, ModelConfig, detach_hidden, map_hidden

CELLS = ["lstm", "gru", "rnn"]


@pytest.mark.parametrize("cell", CELLS)
def test_model_shapes(cell):
    model = tiny_model(cell)
    ids = torch.randint(0, 20, (3, 7))
    logits, hidden = model(ids, model.init_hidden(3))
    assert logits.shape == (3, 7, 20)
    hs = hidden if isinstance(hidden, tuple) else (hidden,)
    assert all(h.shape == (TINY_MODEL["num_layers"], 3, TINY_MODEL["hidden_size"]) for h in hs)
    assert isinstance(hidden, tuple) == (cell == "lstm")


@pytest.mark.parametrize("cell", CELLS)
def test_chunked_forward_equals_one_long_forward(cell):
    """Carrying the hidden state across windows (TBPTT) computes the same logits as one pass."""
    model = tiny_model(cell).eval()
    ids = torch.randint(0, 20, (2, 30))
    full, _ = model(ids, model.init_hidden(2))
    hidden, chunks = model.init_hidden(2), []
    for start in range(0, 30, 7):
        out, hidden = model(ids[:, start : start + 7], detach_hidden(hidden))
        chunks.append(out)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weights_start_as_pytorchs_own_initialization(cell):
    """No special initialization (a +1 forget-gate bias measured worse): a seeded model's
    recurrent weights equal those of the textbook nn.LSTM/GRU/RNN built in the same order."""
    model = tiny_model(cell, seed=3)
    torch.manual_seed(3)
    torch.nn.Embedding(model.config.vocab_size, model.config.embed_dim)
    textbook = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](model.config.embed_dim, model.config.hidden_size, model.config.num_layers,
                           dropout=model.config.dropout, batch_first=True)
    for (name, ours), (_, theirs) in zip(model.rnn.named_parameters(), textbook.named_parameters()):
        assert torch.equal(ours, theirs), name


def test_config_round_trip_and_validation():
    config = ModelConfig(vocab_size=5, cell="gru", num_layers=3)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(vocab_size=5, cell="transformer")
    with pytest.raises(ValueError, match="num_layers"):
        ModelConfig(vocab_size=5, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(vocab_size=5, dropout=1.0)


def test_parameter_count_without_embedding():
    model = CharRNN(ModelConfig(vocab_size=10, embed_dim=4, hidden_size=8, num_layers=1))
    assert model.num_parameters() - model.num_parameters(embedding=False) == 10 * 4


def test_init_hidden_follows_parameter_dtype():
    model = tiny_model("gru").double()
    assert model.init_hidden(2).dtype == torch.float64


@pytest.mark.parametrize("cell", CELLS)
def test_map_hidden_keeps_the_layout_and_applies_to_every_tensor(cell):
    hidden = tiny_model(cell).init_hidden(3)
    mapped = map_hidden(lambda h: h + 1, hidden)
    assert isinstance(mapped, tuple) == (cell == "lstm")
    for h in (mapped if isinstance(mapped, tuple) else (mapped,)):
        assert torch.equal(h, torch.ones(TINY_MODEL["num_layers"], 3, TINY_MODEL["hidden_size"]))


# -- regularization: weight-drop and locked dropout ----------------------------------------

from chargen.model import locked_dropout  # noqa: E402

REGULARIZED = dict(weight_drop=0.5, embed_dropout=0.2, locked_dropout=0.3)


def _same_weights(cell="lstm", **overrides):
    """A plain tiny model and one with `overrides`, holding the same weights."""
    plain, other = tiny_model(cell), tiny_model(cell, **overrides)
    other.load_state_dict(plain.state_dict())
    return plain, other


@pytest.mark.parametrize("cell", CELLS)
def test_layer_by_layer_training_pass_equals_the_fused_stack(cell):
    """The regularized path runs one layer at a time; with nothing dropped it must compute
    exactly what the one-call stack computes (weights, biases and hidden slices in place)."""
    plain, other = _same_weights(cell=cell, weight_drop=1e-9, locked_dropout=1e-9)
    plain.train(), other.train()
    ids = torch.randint(0, 20, (3, 7))
    hidden = map_hidden(lambda h: torch.randn_like(h), plain.init_hidden(3))
    expected, expected_hidden = plain(ids, hidden)
    got, got_hidden = other(ids, hidden)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_hidden, expected_hidden, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_regularization_changes_nothing_at_evaluation(cell):
    plain, other = _same_weights(cell=cell, **REGULARIZED)
    ids = torch.randint(0, 20, (3, 7))
    with torch.no_grad():
        expected, _ = plain.eval()(ids, plain.init_hidden(3))
        got, _ = other.eval()(ids, other.init_hidden(3))
    assert torch.equal(got, expected)


def test_weight_drop_is_active_in_training_and_acts_on_the_recurrent_weights():
    plain, dropped = _same_weights(weight_drop=0.5)
    ids = torch.randint(0, 20, (3, 7))
    torch.manual_seed(1)
    expected, _ = plain.train()(ids, plain.init_hidden(3))
    torch.manual_seed(1)
    got, _ = dropped.train()(ids, dropped.init_hidden(3))
    # From a zero state the first step never reads the recurrent weights: only later steps change.
    torch.testing.assert_close(got[:, 0], expected[:, 0], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got[:, 1:], expected[:, 1:])
    got.sum().backward()
    assert dropped.rnn.weight_hh_l0.grad.abs().sum() > 0  # gradients reach the raw weights
    torch.manual_seed(1)
    again, _ = dropped(ids, dropped.init_hidden(3))
    assert torch.equal(again, got)  # the masks come from torch's generator: seeded, repeatable


def test_locked_dropout_keeps_one_mask_per_stream_for_the_whole_window():
    torch.manual_seed(0)
    x = torch.ones(4, 9, 32)
    out = locked_dropout(x, 0.5)
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / (1 - p)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same at every time step
    assert not torch.equal(out[0], out[1])  # each stream its own mask
    assert locked_dropout(x, 0.0) is x


def test_regularization_options_are_validated():
    for name in REGULARIZED:
        with pytest.raises(ValueError, match=name):
            ModelConfig(vocab_size=5, **{name: 1.0})
        with pytest.raises(ValueError, match=name):
            ModelConfig(vocab_size=5, **{name: -0.1})
    assert ModelConfig.from_dict({"vocab_size": 5}).weight_drop == 0.0  # checkpoints from before the options
