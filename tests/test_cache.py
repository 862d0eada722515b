"""The tokenized-corpus cache: hits give identical ids, changes and corruption are noticed."""

import errno
import os
import tempfile
import time

import pytest
import torch

from chargen.data import cache
from chargen.data.corpus import load_corpus, text_tokenizer


@pytest.fixture
def corpus_file(tmp_path, monkeypatch):
    """A 64 KiB text file, old enough to be cached (the cache skips just-modified files)."""
    monkeypatch.setattr(cache, "MIN_BYTES", 1024)
    path = tmp_path / "big.txt"
    path.write_text(("To be, or not to be: that is the question. Ünïcödé ✓\n" * 1200)[: 64 * 1024], encoding="utf-8")
    _age(path)
    return path


def _age(path, seconds=60):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_cache_hit_returns_identical_ids(corpus_file):
    first = load_corpus([str(corpus_file)], val_frac=0.1)
    assert cache.cache_path(str(corpus_file)).is_file()
    second = load_corpus([str(corpus_file)], val_frac=0.1)
    assert torch.equal(first.train, second.train) and torch.equal(first.val, second.val)
    assert first.vocab == second.vocab and first.fingerprint == second.fingerprint
    assert second.train.dtype == first.train.dtype


def test_cache_changed_corpus_invalidates(corpus_file):
    load_corpus([str(corpus_file)])
    text = corpus_file.read_text(encoding="utf-8")
    corpus_file.write_text(text.replace("question", "QUESTION"), encoding="utf-8")  # same size
    _age(corpus_file, 30)
    changed = load_corpus([str(corpus_file)])
    assert "Q" in changed.vocab.index
    assert changed.vocab.decode(changed.train[:60]).startswith("To be, or not to be: that is the QUESTION")


def test_cache_corrupt_file_is_rebuilt(corpus_file):
    expected = load_corpus([str(corpus_file)])
    entry = cache.cache_path(str(corpus_file))
    for damage in (b"", b"garbage", entry.read_bytes()[:100], entry.read_bytes()[:-10]):
        entry.write_bytes(damage)
        again = load_corpus([str(corpus_file)])
        assert torch.equal(again.train, expected.train) and again.vocab == expected.vocab
    assert cache.load(str(corpus_file), text_tokenizer()) is not None  # rewritten whole


def test_cache_skips_recently_modified_file(corpus_file, monkeypatch):
    _age(corpus_file, 60)
    # "Recently" made an hour wide: the test cannot depend on how fast this machine runs it.
    monkeypatch.setattr(cache, "RACY_SECONDS", 3600.0)
    load_corpus([str(corpus_file)])
    assert not cache.cache_path(str(corpus_file)).exists()


@pytest.mark.parametrize("obstacle", ["read-only cache directory", "a file named like the cache directory"])
def test_cache_that_cannot_be_written_is_not_an_error(corpus_file, monkeypatch, obstacle):
    """The corpus loads as if there were no cache, and nothing is left behind."""
    expected = load_corpus([str(corpus_file)])  # written to the cache, then moved out of the way
    entry = cache.cache_path(str(corpus_file))
    entry.unlink()
    if obstacle == "read-only cache directory":
        entry.parent.chmod(0o555)
        if os.access(entry.parent, os.W_OK):  # root writes anyway: fail as a read-only directory fails
            def denied(*args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

            monkeypatch.setattr(tempfile, "mkstemp", denied)
    else:
        entry.parent.rmdir()
        entry.parent.write_text("not a directory")
    try:
        loaded = load_corpus([str(corpus_file)])
    finally:
        if entry.parent.is_dir():
            entry.parent.chmod(0o755)
    assert torch.equal(loaded.train, expected.train) and loaded.vocab == expected.vocab
    assert not entry.exists()
    if entry.parent.is_dir():
        assert os.listdir(entry.parent) == []  # no temporary file left either


def test_midi_ids_are_cached_per_file_and_keyed_by_vocabulary_version(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from chargen.music import midifile as midi
    from chargen.music import vocabulary as miditokens

    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ["folk_english1.mid", "tiny_c_major_scale.mid"]:
        shutil.copy(Path(__file__).parent / "data" / "midi" / name, songs / name)
        _age(songs / name)
    calls = []
    real_encode = midi.encode_file
    monkeypatch.setattr(midi, "encode_file", lambda f, version: calls.append(version) or real_encode(f, version))
    first = load_corpus([str(songs)])
    assert calls == [miditokens.MIDI_VOCAB_VERSION] * 2
    second = load_corpus([str(songs)])
    assert len(calls) == 2  # both mapped from the cache, none parsed
    assert torch.equal(first.train, second.train) and first.fingerprint == second.fingerprint
    assert second.files == first.files  # the cache folder inside songs/ is not read as corpus
    # An older model's vocabulary (resume, eval) must never be served the new version's ids.
    old = load_corpus([str(songs)], vocab=miditokens.midi_vocab(2))
    assert calls[2:] == [2, 2]  # another vocabulary version: parsed again
    assert old.vocab == miditokens.midi_vocab(2) and "off:60" in old.vocab.decode(torch.cat([old.train, old.val]))
    assert len(load_corpus([str(songs)], vocab=miditokens.midi_vocab(2)).train) == len(old.train)
    assert len(calls) == 4  # the version 2 ids are cached in their turn


def test_cache_notices_a_same_size_edit_with_the_modification_time_set_back(corpus_file):
    """Size, mtime and inode all match the entry, but the bytes do not: the content fingerprint decides."""
    load_corpus([str(corpus_file)])
    before = os.stat(corpus_file)
    text = corpus_file.read_text(encoding="utf-8")
    with open(corpus_file, "r+", encoding="utf-8") as f:  # in place: the inode stays
        f.write(text.replace("question", "QUESTION"))
    os.utime(corpus_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(corpus_file)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    changed = load_corpus([str(corpus_file)])
    assert "Q" in changed.vocab.index
    assert changed.vocab.decode(changed.train[:60]).startswith("To be, or not to be: that is the QUESTION")


def test_cache_entry_is_written_through_atomic_write(corpus_file, monkeypatch):
    """One temporary-file-and-rename writer for the whole project: chargen/atomic.py."""
    from chargen import atomic

    written = []
    real = atomic.atomic_write
    monkeypatch.setattr(cache, "atomic_write", lambda path, *a, **k: written.append(path) or real(path, *a, **k))
    load_corpus([str(corpus_file)])
    assert written == [cache.cache_path(str(corpus_file))]
    assert not [p for p in written[0].parent.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]
