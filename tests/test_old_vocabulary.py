"""Models of the note-off MIDI vocabulary (version 2, before durations) keep loading, sampling and evaluating.

The checkpoint here is written the way chargen wrote music checkpoints before
version 3: the same payload, a version 2 vocabulary of 762 tokens. Its model
draws only on:60, shift:12 and off:60, so what comes out shows which decoder
read the tokens: the note-off one plays C4s whose lengths are multiples of 12
steps; the duration decoder would play nothing, since those tokens are not in
its vocabulary. An off right after its on (no shift between) plays one step.
"""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chargen.cli import cli
from chargen.model import CharRNN, ModelConfig
from chargen.music import grid
from chargen.music import midifile as midi
from chargen.music import vocabulary as miditokens
from chargen.training import checkpoint

MIDI_DIR = Path(__file__).parent / "data" / "midi"
STEP_SECONDS = 60 / (120 * grid.STEPS_PER_BEAT)  # at the default 120 BPM


@pytest.fixture
def old_checkpoint(tmp_path):
    vocab = miditokens.midi_vocab(2)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), num_layers=1, hidden_size=8, embed_dim=6))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for token in ("on:60", "shift:12", "off:60"):
            model.head.bias[vocab.index[token]] = 30.0  # every other token is e^-30 as likely
    path = tmp_path / "old.pt"
    checkpoint.save({"model_config": model.config.to_dict(), "vocab": vocab.to_dict(),
                     "model_state": model.state_dict(), "state": {}, "train_config": {}}, path)
    return path


def test_old_vocabulary_checkpoint_samples_with_its_own_decoder(old_checkpoint, tmp_path):
    out = tmp_path / "old.mid"
    result = CliRunner().invoke(cli, ["sample", str(old_checkpoint), "--length", "300", "--seed", "3",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    notes = midi.piano_roll(midi.read_midi(out))
    assert len(notes) > 5 and {n.pitch for n in notes} == {60}
    steps = [round((n.end_s - n.start_s) / STEP_SECONDS, 6) for n in notes]
    assert all(s == 1 or s % 12 == 0 for s in steps) and max(steps) >= 24


def test_old_vocabulary_checkpoint_takes_a_midi_prime_and_evaluates(old_checkpoint, tmp_path):
    # The prime and the evaluated file are encoded in the model's own vocabulary:
    # in version 3 tokens (dur:, note:) both would fail as tokens the model lacks.
    song = str(MIDI_DIR / "folk_english1.mid")
    out = tmp_path / "continued.mid"
    runner = CliRunner()
    result = runner.invoke(cli, ["sample", str(old_checkpoint), "--prime", song, "--prime-seconds", "2",
                                 "--length", "20", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(midi.piano_roll(midi.read_midi(out))) > 3
    result = runner.invoke(cli, ["eval", str(old_checkpoint), song])
    assert result.exit_code == 0, result.output
    assert "bits per token" in result.stdout
    result = runner.invoke(cli, ["info", str(old_checkpoint)])
    assert result.exit_code == 0, result.output
    assert "note off" in result.stdout and "off copy" in result.stdout
    assert "version 2 (note-offs)" in result.stdout


def test_unknown_vocabulary_version_is_one_error_line(old_checkpoint, tmp_path):
    payload = checkpoint.load(old_checkpoint)
    payload["vocab"]["version"] = 9
    checkpoint.save(payload, tmp_path / "future.pt")
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "future.pt"), "--out", str(tmp_path / "x.mid")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: MIDI vocabulary version 9 is not supported (this chargen reads versions 1, 2, 3)"]
