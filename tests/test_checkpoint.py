import contextlib
import errno
import os
import random
import time
import zipfile

import pytest
import torch

from chargen import checkpoint
from chargen.errors import CheckpointError
from chargen.model import ModelConfig
from chargen.vocab import Vocab
from conftest import tiny_model


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


def test_load_refuses_foreign_and_damaged_files(tmp_path):
    vocab = Vocab.from_text("ab")
    good = tmp_path / "good.pt"
    checkpoint.save(_payload(tiny_model(vocab_size=2), vocab), good)
    cases = {
        "empty.pt": b"",
        **{f"random{i}.pt": random.Random(i).randbytes(2000) for i in range(20)},
        "truncated.pt": good.read_bytes()[: len(good.read_bytes()) // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError):
            checkpoint.load(tmp_path / name)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a chargen checkpoint"):
        checkpoint.load(tmp_path / "foreign.pt")
    torch.save({"format": checkpoint.FORMAT, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(tmp_path / "future.pt")


def test_gpu_style_checkpoint_maps_to_cpu(tmp_path):
    """Tensors are mapped to the CPU on load whatever device they were saved from."""
    vocab = Vocab.from_text("ab")
    path = tmp_path / "m.pt"
    checkpoint.save(_payload(tiny_model(vocab_size=2), vocab), path)
    payload = checkpoint.load(path)
    assert all(t.device.type == "cpu" for t in payload["model_state"].values())


def test_resolve_run_directories(tmp_path):
    vocab = Vocab.from_text("ab")
    data = _payload(tiny_model(vocab_size=2), vocab)
    old, new = tmp_path / "old", tmp_path / "new"
    for run in (old, new):
        run.mkdir()
        checkpoint.save(data, run / checkpoint.LAST)
        time.sleep(0.01)
    checkpoint.save(data, new / checkpoint.BEST)
    assert checkpoint.latest_run(tmp_path) == new
    assert checkpoint.resolve(None, root=str(tmp_path)) == new / checkpoint.BEST
    assert checkpoint.resolve(new, which=checkpoint.LAST) == new / checkpoint.LAST
    assert checkpoint.resolve(old) == old / checkpoint.LAST  # no best.pt yet: falls back
    with pytest.raises(CheckpointError, match="no runs"):
        checkpoint.resolve(None, root=str(tmp_path / "nothing"))


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
