import contextlib
import errno
import os
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

from chargen.errors import CheckpointError
from chargen.model import ModelConfig
from chargen.training import checkpoint
from chargen.vocab import Vocab


def _payload(model, vocab):
    return {"model_config": model.config.to_dict(), "vocab": vocab.to_dict(), "model_state": model.state_dict()}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_save_then_load_gives_identical_logits(tmp_path, cell):
    vocab = Vocab.from_text("abcdefghijklmnopqrst")
    model = tiny_model(cell, vocab_size=len(vocab)).eval()
    path = tmp_path / "m.pt"
    checkpoint.save(_payload(model, vocab), path)
    loaded, loaded_vocab = checkpoint.build_model(checkpoint.load(path))
    ids = torch.randint(0, 20, (2, 9))
    expected, _ = model(ids, model.init_hidden(2))
    actual, _ = loaded(ids, loaded.init_hidden(2))
    assert torch.equal(expected, actual)
    assert loaded_vocab == vocab and loaded.config == model.config


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    vocab = Vocab.from_text("ab")
    model = tiny_model(vocab_size=2)
    path = tmp_path / "last.pt"
    checkpoint.save(_payload(model, vocab), path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.save(_payload(model, vocab), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]


def saved_on_gpu(path: Path, destination: Path) -> Path:
    """A copy of checkpoint `path` as a CUDA process writes it: every storage tagged 'cuda:0'.

    torch.save records each tensor's device as a location string in the pickle
    (protocol 2: BINUNICODE 'cpu', memoized, so rewriting the first one retags them
    all); torch.load restores tensors there unless told where to map them.
    """
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as copy:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename.endswith("/data.pkl"):
                assert b"cuda" not in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
                assert b"cuda:0" in data, "no storage location to retag"
            copy.writestr(entry, data)
    return destination


def _tensors(value):
    """Every tensor in a nested structure of dicts, lists and tuples, in order."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def test_gpu_saved_checkpoint_maps_to_cpu(trained_run, tmp_path):
    """A checkpoint written on a GPU loads on a CPU-only machine, every tensor on the CPU and unchanged."""
    gpu_file = saved_on_gpu(trained_run / checkpoint.LAST, tmp_path / "gpu.pt")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the file really is foreign: a plain load fails
            torch.load(gpu_file, weights_only=True)
    expected, loaded = checkpoint.load(trained_run / checkpoint.LAST), checkpoint.load(gpu_file)
    tensors = list(_tensors(loaded))
    assert len(tensors) > 10  # model, optimizer, hidden state and RNG state
    assert all(t.device.type == "cpu" for t in tensors)
    assert all(torch.equal(a, b) for a, b in zip(_tensors(expected), tensors))
    model, _ = checkpoint.build_model(loaded)
    assert next(model.parameters()).device.type == "cpu"


def test_resolve_run_directories(tmp_path):
    vocab = Vocab.from_text("ab")
    data = _payload(tiny_model(vocab_size=2), vocab)
    old, new = tmp_path / "old", tmp_path / "new"
    for age, run in ((200, old), (100, new)):
        run.mkdir()
        checkpoint.save(data, run / checkpoint.LAST)
        _age(run / checkpoint.LAST, age)  # explicit times: no reliance on the clock ticking between saves
    checkpoint.save(data, new / checkpoint.BEST)
    _age(new / checkpoint.BEST, 300)  # a run's newer file counts: new stays the latest
    assert checkpoint.latest_run(tmp_path) == new
    assert checkpoint.resolve(None, root=str(tmp_path)) == new / checkpoint.BEST
    assert checkpoint.resolve(new, which=checkpoint.LAST) == new / checkpoint.LAST
    assert checkpoint.resolve(old) == old / checkpoint.LAST  # no best.pt yet: falls back
    with pytest.raises(CheckpointError, match="no runs"):
        checkpoint.resolve(None, root=str(tmp_path / "nothing"))


def _age(path: Path, seconds: float) -> None:
    """Set a file's modification time `seconds` into the past."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_new_run_dir_never_reuses_a_run_without_force(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / checkpoint.LAST).write_bytes(b"precious")
    with pytest.raises(CheckpointError, match="--force"):
        checkpoint.new_run_dir(str(run), "corpus", force=False)
    assert (run / checkpoint.LAST).read_bytes() == b"precious"
    named = checkpoint.new_run_dir(None, "my corpus!", force=False, root=str(tmp_path))
    assert named.parent == tmp_path and named.name.startswith("my-corpus-")
    assert checkpoint.new_run_dir(None, "my corpus!", force=False, root=str(tmp_path)) != named


def test_model_config_mismatch_is_a_checkpoint_error(tmp_path):
    vocab = Vocab.from_text("ab")
    data = _payload(tiny_model(vocab_size=2), vocab)
    data["model_config"] = ModelConfig(vocab_size=2, hidden_size=99).to_dict()
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoint.build_model(data)


def test_checkpoints_get_the_mode_a_plain_open_would(tmp_path):
    vocab = Vocab.from_text("ab")
    path = tmp_path / "m.pt"
    checkpoint.save(_payload(tiny_model(vocab_size=2), vocab), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


class _FullDisk:
    """A file that takes `room` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_disk_full_inside_torchs_zip_writer_is_one_clear_error(tmp_path, monkeypatch, room):
    """torch.save turns the ENOSPC its writer hits into "RuntimeError: ... unexpected pos";
    checkpoint.save still says "No space left on device" and keeps the previous file."""
    vocab = Vocab.from_text("ab")
    path = tmp_path / "last.pt"
    checkpoint.save(_payload(tiny_model(vocab_size=2), vocab), path)
    before = path.read_bytes()
    real = checkpoint.atomic_write

    @contextlib.contextmanager
    def nearly_full(target, *args, **kwargs):
        with real(target, *args, **kwargs) as f:
            yield _FullDisk(f, room)

    monkeypatch.setattr(checkpoint, "atomic_write", nearly_full)
    with pytest.raises(CheckpointError) as caught:
        checkpoint.save(_payload(tiny_model(vocab_size=2, seed=1), vocab), path)
    message = str(caught.value)
    assert "No space left on device" in message and "previous checkpoint is unchanged" in message, message
    assert "\n" not in message and "inline_container" not in message
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]


def test_a_runtime_error_that_is_not_the_disk_is_not_disguised(tmp_path, monkeypatch):
    def broken(obj, f):
        raise RuntimeError("a bug in the payload")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug in the payload"):
        checkpoint.save({"model_state": {}}, tmp_path / "m.pt")
    assert os.listdir(tmp_path) == []


def _flip_a_byte_in(path, member_suffix: str, at: int = 9) -> None:
    """Flip one bit of the stored bytes of an archive member, as a bad disk or copy would."""
    with zipfile.ZipFile(path) as archive:
        member = next(i for i in archive.infolist() if i.filename.endswith(member_suffix))
    data = bytearray(path.read_bytes())
    local = member.header_offset  # the local header's own name and extra-field lengths (torch pads the extra field)
    name_len, extra_len = (int.from_bytes(data[local + k : local + k + 2], "little") for k in (26, 28))
    start = local + 30 + name_len + extra_len
    data[start + at] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_checkpoint_with_one_flipped_byte_in_a_weight_is_refused(tmp_path):
    vocab = Vocab.from_text("ab")
    model = tiny_model(vocab_size=2)
    path = tmp_path / "m.pt"
    checkpoint.save(_payload(model, vocab), path)
    storages = [n for n in zipfile.ZipFile(path).namelist() if "/data/" in n and not n.endswith("serialization_id")]
    assert storages, "torch.save should store tensors as data/N members"
    _flip_a_byte_in(path, storages[0].split("/", 1)[1])
    with pytest.raises(CheckpointError, match=r"damaged \(data/\d+ fails its checksum\)") as caught:
        checkpoint.load(path)
    assert "\n" not in str(caught.value)


def test_new_run_dir_does_not_call_a_folder_of_other_files_a_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(CheckpointError, match="not empty and holds no run") as caught:
        checkpoint.new_run_dir(str(folder), "corpus", force=False)
    assert "a run already exists" not in str(caught.value)
    assert sorted(os.listdir(folder)) == ["cat.jpg"]
