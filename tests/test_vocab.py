import pytest
import torch

from chargen.errors import ChargenError
from chargen.vocab import Vocab, codepoints, storage_dtype

MULTILINGUAL = "Café naïve — Привет, мир! 你好，世界 🎵🎹 e\u0301 \t\n"


def test_vocab_round_trip_non_ascii():
    vocab = Vocab.from_text(MULTILINGUAL)
    ids = vocab.encode(MULTILINGUAL)
    assert vocab.decode(ids) == MULTILINGUAL
    # code points, not bytes: the emoji and CJK characters are one token each
    assert len(ids) == len(MULTILINGUAL)
    assert "🎵" in vocab.tokens and "你" in vocab.tokens


def test_vocab_is_sorted_by_code_point_and_unique():
    vocab = Vocab.from_text("banana")
    assert vocab.tokens == ["a", "b", "n"]
    assert vocab.encode("nab").tolist() == [2, 0, 1]


def test_vocab_dict_round_trip():
    vocab = Vocab.from_text(MULTILINGUAL)
    again = Vocab.from_dict(vocab.to_dict())
    assert again == vocab
    assert again.encode(MULTILINGUAL).tolist() == vocab.encode(MULTILINGUAL).tolist()


def test_vocab_missing_characters_are_named():
    vocab = Vocab.from_text("abc")
    assert vocab.missing("abxcyx") == ["x", "y"]
    with pytest.raises(ChargenError, match="'x'"):
        vocab.encode("abx")


def test_vocab_encode_codepoints_compact_dtype():
    vocab = Vocab.from_text("hello world")
    ids = vocab.encode_codepoints(codepoints("low"))
    assert ids.dtype == torch.uint8
    assert vocab.decode(ids) == "low"


@pytest.mark.parametrize("size, dtype", [(1, torch.uint8), (256, torch.uint8), (257, torch.int16),
                                         (32768, torch.int16), (32769, torch.int32)])
def test_storage_dtype_holds_every_id(size, dtype):
    assert storage_dtype(size) == dtype
    assert torch.tensor([size - 1]).to(dtype).item() == size - 1


def test_midi_kind_vocab_encodes_token_lists():
    vocab = Vocab(["<piece>", "on:60", "off:60"], kind="midi")
    assert vocab.encode(["on:60", "off:60"]).tolist() == [1, 2]
    assert vocab.decode([0, 1]) == ["<piece>", "on:60"]
    with pytest.raises(ChargenError, match="on:61"):
        vocab.encode(["on:61"])


def test_vocab_rejects_bad_construction():
    with pytest.raises(ValueError):
        Vocab(["a", "a"])
    with pytest.raises(ValueError):
        Vocab(["ab"], kind="text")
    with pytest.raises(ValueError):
        Vocab(["a"], kind="video")
