"""Music sampling options: leaving the prime out of the file, and manifests that regenerate a file exactly.

The model here is written by hand so that what it plays is known: it draws
only note:30, dur:12 and shift:12 (C1, a pitch no prime piece here uses), so
any other pitch in a file comes from the prime.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chargen.cli import cli
from chargen.model import CharRNN, ModelConfig
from chargen.music import midifile as midi
from chargen.music import vocabulary as miditokens
from chargen.training import checkpoint

PRIME = Path(__file__).parent / "data" / "midi" / "folk_english1.mid"
NEW_PITCH = 30


@pytest.fixture
def music_model(tmp_path):
    vocab = miditokens.midi_vocab()
    model = CharRNN(ModelConfig(vocab_size=len(vocab), num_layers=1, hidden_size=8, embed_dim=6))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for token in (f"note:{NEW_PITCH}", "dur:12", "shift:12"):
            model.head.bias[vocab.index[token]] = 30.0  # every other token is e^-30 as likely
    run = tmp_path / "run"
    run.mkdir()
    checkpoint.save({"model_config": model.config.to_dict(), "vocab": vocab.to_dict(),
                     "model_state": model.state_dict(), "state": {}, "train_config": {}}, run / "best.pt")
    return run


def pitches(path):
    return {n.pitch for n in midi.piano_roll(midi.read_midi(path))}


def sample(*args):
    return CliRunner().invoke(cli, ["sample", *map(str, args)])


def test_omit_prime_leaves_the_prime_out_of_the_file(music_model, tmp_path):
    prime_pitches = pitches(PRIME)
    assert NEW_PITCH not in prime_pitches
    common = [music_model, "--prime", PRIME, "--prime-seconds", "4", "--length", "60", "--seed", "5"]
    result = sample(*common, "--out", tmp_path / "with.mid")
    assert result.exit_code == 0, result.output
    result = sample(*common, "--omit-prime", "--out", tmp_path / "without.mid")
    assert result.exit_code == 0, result.output
    assert pitches(tmp_path / "with.mid") & prime_pitches  # the prime is there by default
    assert pitches(tmp_path / "without.mid") == {NEW_PITCH}
    with_prime = [n for n in midi.piano_roll(midi.read_midi(tmp_path / "with.mid")) if n.pitch == NEW_PITCH]
    without = midi.piano_roll(midi.read_midi(tmp_path / "without.mid"))
    assert len(without) == len(with_prime) > 5  # the same new notes, the same seed
    assert without[0].start_s == pytest.approx(with_prime[0].start_s - 4, abs=0.3)  # time starts at the prime's end


def test_a_manifest_regenerates_its_file_exactly(music_model, tmp_path):
    # Sample 2 of 3, no --seed given: the manifest must record the seed drawn.
    result = sample(music_model, "--prime", PRIME, "--prime-seconds", "2", "--length", "80", "--num-samples", "3",
                    "--temp", "1.5", "--omit-prime", "--out", tmp_path / "take.mid")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "take-2.mid.json").read_text())
    assert record["sample"] == 2 and isinstance(record["options"]["seed"], int)
    assert record["options"]["include_prime"] is False and record["options"]["n"] == 3
    again = sample("--from-manifest", tmp_path / "take-2.mid.json", "--out", tmp_path / "again.mid")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again.mid").read_bytes() == (tmp_path / "take-2.mid").read_bytes()
    assert (tmp_path / "again.mid").read_bytes() != (tmp_path / "take-3.mid").read_bytes()
    # Without --out it goes beside the manifest, never over the original.
    assert sample("--from-manifest", tmp_path / "take-1.mid.json").exit_code == 0
    assert (tmp_path / "take-1-again.mid").read_bytes() == (tmp_path / "take-1.mid").read_bytes()


def test_manifest_bad_values_are_one_error_line(music_model, tmp_path):
    assert sample(music_model, "--length", "20", "--seed", "1", "--out", tmp_path / "a.mid").exit_code == 0
    manifest = tmp_path / "a.mid.json"
    (tmp_path / "junk.json").write_text("{not json")
    damaged = json.loads(manifest.read_text())
    damaged["sample"] = 4
    (tmp_path / "damaged.json").write_text(json.dumps(damaged))
    cases = [
        (["--from-manifest", tmp_path / "junk.json"], "not a chargen sample manifest"),
        (["--from-manifest", tmp_path / "damaged.json"], "the manifest is damaged"),
        (["--from-manifest", tmp_path / "absent.json"], "cannot read manifest"),
        (["--from-manifest", manifest, "--seed", "2"], "--from-manifest takes its settings from the manifest; drop --seed"),
    ]
    for args, message in cases:
        result = sample(*args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and message in lines[0], (args, result.stderr)
    other = tmp_path / "other"
    shutil.copytree(music_model, other)
    payload = checkpoint.load(other / "best.pt")
    payload["model_state"]["head.bias"][0] += 1  # retrained: another model under the same name
    checkpoint.save(payload, other / "best.pt")
    result = sample(other, "--from-manifest", manifest)
    assert result.exit_code == 1 and "is not the checkpoint this sample came from" in result.stderr


def test_omit_prime_is_for_music_models(tmp_path, trained_run):
    result = sample(trained_run, "--omit-prime")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("--omit-prime is for music models; this is a text model")


@pytest.mark.parametrize("version", [2, 3])
def test_tokens_after_the_prime_keep_its_state_but_not_its_notes(version):
    prime = midi.read_prime(PRIME, 3.0, version)
    new = (["note:40", "shift:6", "note:41"] if version == 3 else ["on:40", "shift:6", "off:40", "on:41"])
    notes, tempos, _ = miditokens.tokens_to_notes_after(prime + new, len(prime), version)
    played = sorted((n.start, n.pitch) for n in notes)
    assert played == [(0, 40), (6, 41)]
    full, full_tempos, _ = miditokens.tokens_to_notes(prime, version)
    assert {n.velocity for n in notes} == {[n for n in full if n.start == max(m.start for m in full)][0].velocity}
    assert tempos[0][0] == 0 and tempos[0][1] == full_tempos[-1][1]
