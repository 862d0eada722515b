"""Bits per note: a music model's score that does not depend on its vocabulary, checked by hand.

`chargen eval` and the training summary (and metrics.jsonl) of a music run print it
beside bits per token. Here both are recomputed independently: the model run over the
file in one pass, its log-probabilities summed, and the notes counted by hand.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import TINY_MODEL, train_args

import chargen
from chargen.cli import cli
from chargen.music import midifile as midi

MIDI_DIR = Path(__file__).parent / "data" / "midi"


def total_bits(model, tokens: list[str]) -> float:
    """Bits the model spends on tokens[1:], each predicted from all before it, in one pass."""
    ids = model.vocab.encode(tokens)
    with torch.no_grad():
        logits, _ = model.network(ids[:-1].unsqueeze(0), model.network.init_hidden(1))
    return F.cross_entropy(logits[0].float(), ids[1:].long(), reduction="sum").item() / math.log(2)


def figures(output: str) -> dict[str, float]:
    """{"token": 2.1234, "note": 5.6789} from lines like '2.1234 bits per token'."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if words[1:3] == ["bits", "per"]:
            found[words[3]] = float(words[0])
    return found


def test_eval_prints_bits_per_token_and_per_note_as_counted_by_hand(session_music_run):
    scale = MIDI_DIR / "tiny_c_major_scale.mid"
    tokens = midi.encode_file(scale)
    assert len(tokens) == 20  # <piece> tempo prog vel dur, then C D E F G A B C with a shift between
    notes = 8  # the scale's eight notes, every one a predicted token (only <piece> is not)
    result = CliRunner().invoke(cli, ["eval", str(session_music_run), str(scale), "--batch-size", "1",
                                      "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    bits = total_bits(chargen.load(session_music_run, precision="fp32"), tokens)
    printed = figures(result.stdout)
    assert printed["token"] == pytest.approx(bits / 19, abs=2e-4)
    assert printed["note"] == pytest.approx(bits / notes, abs=2e-4)


def test_a_text_model_has_no_bits_per_note(session_text_run, tmp_path):
    (tmp_path / "t.txt").write_text("First Citizen:\nSpeak, speak.\n")
    result = CliRunner().invoke(cli, ["eval", str(session_text_run), str(tmp_path / "t.txt")])
    assert result.exit_code == 0, result.output
    assert set(figures(result.stdout)) == {"character"}


def test_a_music_runs_summary_and_metrics_give_its_validation_in_bits_per_note(tmp_path):
    """Half of a two-voice scale held out: 14 validation tokens, 13 of them predicted, 9 of those notes."""
    song = MIDI_DIR / "tiny_2tracks_type1.mid"
    tokens = midi.encode_file(song)
    val = tokens[14:]
    assert val == ["note:65", "note:66", "shift:24", "note:67", "note:68", "shift:24", "note:69", "note:70",
                   "shift:24", "note:71", "note:72", "shift:24", "note:72", "note:73"]
    notes = 9  # val[1:] holds 9 note: tokens (val[0] is the context, not a prediction)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(song), "--steps", "3", "--val-frac", "0.5", "--out", str(run),
                                      *train_args(**TINY_MODEL, precision="fp32", device="cpu")])
    assert result.exit_code == 0, result.output
    model = chargen.load(run / "last.pt", precision="fp32")
    bits = total_bits(model, val)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["val_bits"] == pytest.approx(bits / 13, abs=1e-4)
    assert row["val_bits_per_note"] == pytest.approx(bits / notes, abs=1e-4)
    summary = " ".join(result.stderr.split())
    final = re.search(r"final val (\S+) bits/token, (\S+) bits/note", summary)
    assert final, summary[-1500:]
    assert float(final[1]) == pytest.approx(bits / 13, abs=2e-4)
    assert float(final[2]) == pytest.approx(bits / notes, abs=2e-4)
