import os
import threading
import unicodedata

import pytest
import torch
from conftest import deny_reading
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargen.data import textstream
from chargen.data.corpus import load_corpus
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
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 7)
    corpus = load_corpus([str(path)], val_frac=0.0)
    assert corpus.vocab.decode(corpus.train) == text


def test_invalid_utf8_reports_file_and_byte_offset(tmp_path, monkeypatch):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello w\xc3\xb6rld \xff tail")
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 4)
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


# -- reading once, from any stream --------------------------------------------------


def test_a_pipe_is_read_once_like_a_file(tmp_path):
    """A pipe cannot be read twice or seeked: loading it gives what loading the file gives."""
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be\n" * 50)
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, path.read_bytes()), os.close(write)))
    writer.start()
    try:
        piped = load_corpus([f"/dev/fd/{read}"])
    finally:
        writer.join()
        os.close(read)
    whole = load_corpus([str(path)])
    assert piped.vocab == whole.vocab and piped.fingerprint == whole.fingerprint
    assert torch.equal(piped.train, whole.train) and torch.equal(piped.val, whole.val)


def test_growing_vocabulary_and_id_dtype_across_files_equal_a_fresh_read(tmp_path):
    """Ids numbered while reading, then renumbered into the sorted vocabulary, equal the
    ids of the sorted vocabulary; a vocabulary outgrowing uint8 mid-corpus is widened."""
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("zyx abc " * 20)
    b.write_text("".join(chr(0x4E00 + i) for i in range(300)))  # 300 more characters: int16 ids
    corpus = load_corpus([str(a), str(b)], val_frac=0.0)
    assert corpus.train.dtype == torch.int16
    assert corpus.vocab.tokens == sorted(set(a.read_text() + b.read_text()))
    assert corpus.vocab.decode(corpus.train) == a.read_text() + b.read_text()


# -- text normalization ---------------------------------------------------------------


def test_crlf_and_lone_cr_become_newlines_by_default_even_across_chunks(tmp_path, monkeypatch):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"one\r\ntwo\rthree\r\n\r\nfour\n")
    monkeypatch.setattr(textstream, "CHUNK_BYTES", 4)  # "one\r" | "\ntwo": the pair straddles a chunk
    corpus = load_corpus([str(path)], val_frac=0.0)
    assert corpus.vocab.decode(corpus.train) == "one\ntwo\nthree\n\nfour\n"
    assert "\r" not in corpus.vocab.index


def test_line_endings_keep_reads_bytes_as_they_are(tmp_path):
    path = tmp_path / "dos.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    corpus = load_corpus([str(path)], val_frac=0.0, line_endings="keep")
    assert corpus.vocab.decode(corpus.train) == "one\r\ntwo\rthree\n"


def test_decomposed_text_is_read_in_nfc(tmp_path):
    path = tmp_path / "nfd.txt"
    path.write_text(unicodedata.normalize("NFD", "café résumé naïve"))
    corpus = load_corpus([str(path)], val_frac=0.0)
    assert corpus.vocab.decode(corpus.train) == unicodedata.normalize("NFC", "café résumé naïve")
    assert "\u0301" not in corpus.vocab.index


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="ab e\u0301\u0327\u0308\r\n\u1100\u1161\u11a8é你🎵", min_size=1, max_size=60),
       chunk=st.integers(1, 9), keep=st.booleans())
def test_chunked_reading_equals_normalizing_the_whole_text(tmp_path, monkeypatch, text, chunk, keep):
    """Chunk boundaries never change the result: NFC and newline handling of the whole text."""
    path = tmp_path / "p.txt"
    path.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(textstream, "CHUNK_BYTES", chunk)
    corpus = load_corpus([str(path)], val_frac=0.0, line_endings="keep" if keep else "normalize")
    whole = text if keep else textstream.normalize_line_endings(text)  # what a CRLF prime becomes too
    assert corpus.vocab.decode(corpus.train) == unicodedata.normalize("NFC", whole)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_text_is_named_with_how_to_convert(tmp_path, encoding):
    path = tmp_path / "wide.txt"
    path.write_bytes("Hello, world.\n".encode(encoding))
    expected = "UTF-32" if "32" in encoding else "UTF-16"
    with pytest.raises(CorpusError, match=f"looks like {expected} text.*iconv -f {expected} -t UTF-8") as e:
        load_corpus([str(path)])
    assert "binary" not in str(e.value)


# -- unreadable, repeated and special files ---------------------------------------------


@pytest.mark.parametrize("inside_a_folder", [False, True])
def test_unreadable_file_is_one_clear_error(tmp_path, monkeypatch, inside_a_folder):
    (tmp_path / "ok.txt").write_text("fine text\n")
    locked = tmp_path / "locked.txt"
    locked.write_text("secret\n")
    deny_reading(monkeypatch, locked)
    try:
        with pytest.raises(CorpusError, match=r"locked.txt: cannot read it: Permission denied"):
            load_corpus([str(tmp_path) if inside_a_folder else str(locked)])
    finally:
        os.chmod(locked, 0o644)


def test_unreadable_subfolder_is_skipped_with_a_note(tmp_path, monkeypatch):
    (tmp_path / "ok.txt").write_text("fine text\n" * 10)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "inside.txt").write_text("hidden\n")
    deny_reading(monkeypatch, locked)
    try:
        corpus = load_corpus([str(tmp_path)])
    finally:
        os.chmod(locked, 0o755)
    assert corpus.files == [str(tmp_path / "ok.txt")]
    assert corpus.skipped == [(str(locked), "cannot read this folder: Permission denied")]


def test_a_file_given_twice_is_read_once_and_its_validation_part_stays_out_of_training(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("abcdefghij")
    (tmp_path / "sub").mkdir()
    also = tmp_path / "sub" / "link.txt"
    also.symlink_to(path)
    corpus = load_corpus([str(path), str(path), str(also)], val_frac=0.2)
    assert corpus.files == [str(path)]
    assert corpus.vocab.decode(corpus.train) == "abcdefgh" and corpus.vocab.decode(corpus.val) == "ij"
    assert corpus.skipped == [(str(path), "given more than once; read once"),
                              (str(also), "given more than once; read once")]


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_a_file_that_fails_on_read_is_one_clear_error():
    with pytest.raises(CorpusError, match=r"/proc/self/mem: cannot read it: Input/output error"):
        load_corpus(["/proc/self/mem"])


def test_an_endless_device_is_refused_at_its_first_chunk():
    with pytest.raises(CorpusError, match=r"/dev/zero: looks like a binary file \(NUL byte at offset 0\)"):
        load_corpus(["/dev/zero"])


# -- streams that never end, and FIFOs nobody writes to ------------------------------------------


def endless_writer(path, stop: threading.Event, line: bytes = b"hello world\n" * 4096) -> threading.Thread:
    """A thread that writes `line` to a FIFO for as long as someone reads it, until `stop`
    (it never waits forever for a reader: the test stays in charge)."""

    def write():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # no reader yet
                stop.wait(0.01)
        else:
            return
        os.set_blocking(fd, True)
        try:
            while not stop.is_set():
                os.write(fd, line)
        except OSError:  # the reader left
            pass
        finally:
            os.close(fd)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_an_endless_stream_stops_at_the_limit_with_progress_on_the_way(tmp_path):
    """Issue 21: `chargen train <(yes 'hello world')` read forever (1.37 GB at 20 s), saying nothing."""
    from chargen.data.corpus import Reading

    fifo = tmp_path / "yes"
    os.mkfifo(fifo)
    stop, seen = threading.Event(), []
    writer = endless_writer(fifo, stop)
    try:
        with pytest.raises(CorpusError, match=r"yes: stopped reading after 2,097,152 bytes, the most a pipe, "
                                              r"FIFO or stdin corpus may hold \(--max-stream-mb 2\)"):
            load_corpus([str(fifo)], max_stream_bytes=2 * 2**20, progress=seen.append)
    finally:
        stop.set()
        writer.join()
    assert seen and all(isinstance(r, Reading) and r.file == str(fifo) and not r.waiting for r in seen)
    sizes = [r.bytes_read for r in seen]
    assert sizes == sorted(sizes) and sizes[-1] == 2 * 2**20 + 1  # one byte past the limit, no more


def test_a_regular_file_has_no_stream_limit(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be\n" * 100)
    assert len(load_corpus([str(path)], val_frac=0.0, max_stream_bytes=10).train) == 1900


def test_a_fifo_nobody_writes_to_is_reported_then_read_when_a_writer_comes(tmp_path):
    """Issue 21: `train --resume` of a run trained from a FIFO blocked silently, opening the FIFO."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    waiting, result = threading.Event(), {}

    def progress(reading):
        if reading.waiting:
            waiting.set()

    reader = threading.Thread(target=lambda: result.update(corpus=load_corpus([str(fifo)], progress=progress)))
    reader.start()
    assert waiting.wait(timeout=30), "load_corpus never said it was waiting for a writer"
    with open(fifo, "wb") as f:
        f.write(b"to be or not to be\n" * 50)
    reader.join(timeout=60)
    assert len(result["corpus"].train) + len(result["corpus"].val) == 950
