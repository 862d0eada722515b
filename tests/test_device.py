"""Devices: names normalized in one place, and every tensor sampling makes placed on the model's device.

No GPU runs these tests. A GPU's two names (cuda, cuda:0) are simulated by telling torch a GPU
is there; where tensors are made is checked on PyTorch's `meta` device, which holds shapes but
no numbers: with the model there, any tensor made on the CPU by mistake shows up in an
operation beside the model's (the way a CPU tensor meets CUDA weights on a GPU).
"""

import types

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import chargen
from chargen import device as devices
from chargen.model import CharRNN, ModelConfig
from chargen.sampling.draw import SampleConfig, choose
from chargen.sampling.fused import FusedStep
from chargen.sampling.generate import PARALLEL_STREAMS, generate, read
from chargen.vocab import Vocab

META = torch.device("meta")


@pytest.fixture
def one_gpu(monkeypatch):
    """torch believes GPU 0 is there (and current); no tensor may be made on it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_a_gpu_is_named_with_its_index_wherever_it_is_resolved(one_gpu):
    for name in ("cuda", "cuda:0", "auto", torch.device("cuda")):
        assert devices.resolve_device(name) == torch.device("cuda", 0)
    assert devices.resolve_device("cpu") == devices.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_same_device_treats_cuda_and_cuda_0_as_one_gpu(one_gpu):
    assert devices.same_device("cuda", torch.device("cuda", 0))
    assert devices.same_device(torch.device("cuda"), "cuda:0")
    assert not devices.same_device("cuda:1", "cuda:0")
    assert not devices.same_device("cpu", "cuda")
    assert devices.same_device("cpu", torch.device("cpu"))


def test_without_a_gpu_cuda_is_one_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(chargen.ChargenError, match="no CUDA GPU"):
        devices.resolve_device("cuda")
    with pytest.raises(chargen.ArgumentError, match="device"):
        devices.resolve_device("tpu")


def test_a_state_on_cuda_0_is_accepted_by_a_model_on_cuda(one_gpu):
    """Issue 21: the model said torch.device("cuda") and its state's tensors said cuda:0, so on a
    GPU every saved State was refused (and every primed request to `serve --device cuda`)."""
    vocab = Vocab.from_text("abc\n")
    model = chargen.Model(CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=8, embed_dim=4)), vocab)
    model.device = torch.device("cuda")  # as a model loaded with device="cuda" once held it
    on_gpu = types.SimpleNamespace(device=torch.device("cuda", 0), shape=(1, len(vocab)))
    state = chargen.State(hidden=None, logits=on_gpu, length=1, model=model._shape(), model_id=model._identity)
    model._check_state(state)  # no error
    on_cpu = types.SimpleNamespace(device=torch.device("cpu"), shape=(1, len(vocab)))
    with pytest.raises(chargen.ArgumentError, match="is on cpu"):
        model._check_state(chargen.State(hidden=None, logits=on_cpu, length=1, model=model._shape(),
                                         model_id=model._identity))


# -- where sampling makes its tensors ------------------------------------------------------------


class CpuTensorAudit(TorchDispatchMode):
    """Records every operation handed both a CPU tensor (0-dim scalars aside) and one on another
    device: on a GPU, each would be a device mismatch (or a hidden copy each step)."""

    def __init__(self):
        super().__init__()
        self.operations = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        on_cpu = any(t.device.type == "cpu" and t.dim() > 0 for t in tensors)
        if on_cpu and any(t.device.type != "cpu" for t in tensors):
            self.operations.add(str(func))
        return func(*args, **kwargs)


def meta_model(cell: str) -> CharRNN:
    return CharRNN(ModelConfig(vocab_size=65, cell=cell, hidden_size=32, embed_dim=8)).to(META).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fused_step_makes_every_tensor_on_the_models_device(cell, dtype):
    """Issue 21: the LSTM's gate reordering indexed GPU weights with CPU indices."""
    model = meta_model(cell)
    with torch.inference_mode(), CpuTensorAudit() as audit:
        step = FusedStep(model, model.init_hidden(2), dtype)
        logits = step(torch.zeros(2, dtype=torch.long, device=META))
    assert audit.operations == set()
    assert logits.device == META and all(t.device == META for t in step.state)


@pytest.mark.parametrize("streams", [1, PARALLEL_STREAMS])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_generation_reading_and_drawing_make_every_tensor_on_the_models_device(cell, streams):
    model = meta_model(cell)
    config = SampleConfig(length=4, num_samples=streams, temperature=0.8, top_k=5, top_p=0.9, precision="fp32")
    with CpuTensorAudit() as audit:
        drawn = list(generate(model, torch.zeros(3, dtype=torch.long, device=META), config, generator=None))
        logits, hidden = read(model, torch.zeros(1, 5, dtype=torch.long, device=META), model.init_hidden(1))
        chosen = choose(logits, config)
    assert audit.operations == set()
    assert {t.device for t in drawn} == {META} and chosen.device == META


def test_a_models_states_live_and_continue_on_its_device():
    vocab = Vocab.from_text("abc\n")
    network = CharRNN(ModelConfig(vocab_size=len(vocab), hidden_size=8, embed_dim=4))
    model = chargen.Model(network, vocab, device="meta", precision="fp32")
    with CpuTensorAudit() as audit:
        state = model.prime_state("abc", model.prime_state("ab"))
    assert audit.operations == set()
    assert state.logits.device == META and state.hidden[0].device == META
