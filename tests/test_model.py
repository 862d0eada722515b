import pytest
import torch

from chargen.model import CharRNN, ModelConfig, detach_hidden, map_hidden
from conftest import TINY_MODEL, tiny_model

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


def test_lstm_forget_gate_bias_starts_at_one():
    model = tiny_model("lstm")
    H = TINY_MODEL["hidden_size"]
    total = model.rnn.bias_ih_l0[H : 2 * H] + model.rnn.bias_hh_l0[H : 2 * H]
    assert torch.allclose(total, torch.ones(H))


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
