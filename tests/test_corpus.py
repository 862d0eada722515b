import pytest
import torch

from chargen import corpus as corpus_module
from chargen.corpus import load_corpus
from chargen.errors import CorpusError


def test_load_text_corpus_splits_last_part_of_each_file(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("abcdefghij")
    b.write_text("0123456789")
    corpus = load_corpus([str(a), str(b)], val_frac=0.2)
    assert corpus.vocab.decode(corpus.train) == "abcdefgh" + "01234567"
    assert corpus.vocab.decode(corpus.val) == "ij" + "89"
    assert corpus.train.dtype == torch.uint8


def test_directory_of_txt_files_is_read_recursively_and_sorted(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("bbbb")
    (tmp_path / "sub" / "a.txt").write_text("aaaa")
    (tmp_path / "notes.md").write_text("ignored")
    corpus = load_corpus([str(tmp_path)], val_frac=0.0)
    assert corpus.files == [str(tmp_path / "b.txt"), str(tmp_path / "sub" / "a.txt")]
    assert corpus.vocab.decode(corpus.train) == "bbbbaaaa"


def test_bom_is_stripped_and_unicode_kept(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffПривет 🎵".encode("utf-8"))
    corpus = load_corpus([str(path)], val_frac=0.0)
    assert corpus.vocab.decode(corpus.train) == "Привет 🎵"


def test_chunked_decoding_equals_whole_file(tmp_path, monkeypatch):
    """Multi-byte characters split across chunk boundaries decode correctly."""
    text = "héllo wörld — 你好 🎹 " * 50
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 7)
    corpus = load_corpus([str(path)], val_frac=0.0)
    assert corpus.vocab.decode(corpus.train) == text


def test_invalid_utf8_reports_file_and_byte_offset(tmp_path, monkeypatch):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello w\xc3\xb6rld \xff tail")
    monkeypatch.setattr(corpus_module, "CHUNK_BYTES", 4)
    with pytest.raises(CorpusError, match=r"bad.txt: invalid UTF-8 at byte offset 13"):
        load_corpus([str(path)])


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "blob.txt"
    path.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(CorpusError, match="binary"):
        load_corpus([str(path)])


def test_empty_and_missing_corpora_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus([str(empty)])
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus([str(tmp_path / "nope.txt")])
    (tmp_path / "d").mkdir()
    with pytest.raises(CorpusError, match="no text"):
        load_corpus([str(tmp_path / "d")])


def test_fingerprint_changes_with_content(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("abcabc")
    first = load_corpus([str(path)]).fingerprint
    assert load_corpus([str(path)]).fingerprint == first
    path.write_text("abcabd")
    assert load_corpus([str(path)]).fingerprint != first


def test_encoding_with_a_given_vocab(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("cab")
    vocab = load_corpus([str(path)]).vocab
    other = tmp_path / "o.txt"
    other.write_text("abz")
    with pytest.raises(CorpusError, match="'z'"):
        load_corpus([str(other)], vocab=vocab)
