"""Every command through click's CliRunner, happy paths and the commonest errors."""

import json
import shutil
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner
from conftest import TINY_MODEL, TINY_RUN_STEPS, TINY_TEXT, TINY_TRAIN_ARGS

from chargen import __version__
from chargen.cli import cli
from chargen.music import vocabulary as miditokens
from chargen.training import checkpoint


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs go to ./checkpoints
    return CliRunner()


def test_version_and_help(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    for command in ["train", "sample", "eval", "info", "inspect", "show", "compare"]:
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example" in result.output


def test_train_writes_a_run_directory(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= {"last.pt", "best.pt", "metrics.jsonl"}
    payload = checkpoint.load(trained_run / "last.pt")
    assert payload["state"]["step"] == TINY_RUN_STEPS == 10
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]  # --eval-every 5
    assert all(r["val_bits"] > 0 for r in rows)


def test_train_reports_on_stderr_only(runner, tiny_corpus):
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "5", *TINY_TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "bits/char" in result.stderr and "Summary" in result.stderr
    assert checkpoint.latest_run("checkpoints") is not None


def test_sample_streams_text_to_stdout(runner, trained_run):
    result = runner.invoke(cli, ["sample", str(trained_run), "--length", "50", "--seed", "1", "--prime", "All:"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("All:")
    assert len(result.stdout.rstrip("\n")) >= 50
    again = runner.invoke(cli, ["sample", str(trained_run), "--length", "50", "--seed", "1", "--prime", "All:"])
    assert again.stdout == result.stdout


def test_sample_defaults_to_the_latest_run(runner, tiny_corpus):
    trained = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "3", *TINY_TRAIN_ARGS])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(cli, ["sample", "--length", "20", "--temp", "0"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout) == 20 + 1  # and a final newline


def test_sample_many_to_files(runner, trained_run, tmp_path):
    out = tmp_path / "gen.txt"
    result = runner.invoke(cli, ["sample", str(trained_run), "--num-samples", "3", "--length", "30",
                                 "--out", str(out), "--top-k", "5", "--top-p", "0.9"])
    assert result.exit_code == 0, result.stderr
    files = sorted(tmp_path.glob("gen-*.txt"))
    assert [f.name for f in files] == ["gen-1.txt", "gen-2.txt", "gen-3.txt"]
    assert all(len(f.read_text()) == 30 for f in files)


def test_sample_stop_string(runner, trained_run):
    """--stop ends the sample before the first stop string: the same sample as without it, cut there."""
    whole = runner.invoke(cli, ["sample", str(trained_run), "--length", "300", "--seed", "3"])
    result = runner.invoke(cli, ["sample", str(trained_run), "--length", "300", "--seed", "3", "--stop", "e"])
    assert whole.exit_code == 0 and result.exit_code == 0, result.output
    assert 0 < whole.stdout.index("e") < 300, "this seed's sample should hold an 'e' after some text"
    assert result.stdout == whole.stdout[: whole.stdout.index("e")] + "\n"


def test_eval_prints_bits_per_character(runner, trained_run, tiny_corpus):
    result = runner.invoke(cli, ["eval", str(trained_run), str(tiny_corpus)])
    assert result.exit_code == 0, result.stderr
    value = float(result.stdout.split()[0])
    assert 0 < value < 8 and "bits per character" in result.stdout


def test_info_describes_the_run(runner, trained_run):
    result = runner.invoke(cli, ["info", str(trained_run)])
    assert result.exit_code == 0, result.stderr
    assert f"lstm {TINY_MODEL['num_layers']} x {TINY_MODEL['hidden_size']}" in result.stdout
    assert "bits per char" in result.stdout
    facts = json.loads(runner.invoke(cli, ["info", str(trained_run), "--json"]).stdout)
    assert facts["step"] == TINY_RUN_STEPS and facts["vocab"]["kind"] == "text"
    assert facts["parameters"] > 0 and facts["best_val_bits"] > 0


# -- music -------------------------------------------------------------------------------

MIDI_DIR = Path(__file__).parent / "data" / "midi"


@pytest.fixture
def music_run(runner, tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    for name in ["folk_english1.mid", "tiny_c_major_scale.mid", "bach_chorale_bwv1_6.mid"]:
        shutil.copy(MIDI_DIR / name, songs / name)
    (songs / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    result = runner.invoke(cli, ["train", str(songs), "--steps", "6", *TINY_TRAIN_ARGS, "--out", str(tmp_path / "music")])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "broken.mid" in result.stderr
    return tmp_path / "music"


def test_music_train_then_sample_writes_playable_midi(runner, music_run, tmp_path):
    out = tmp_path / "song.mid"
    result = runner.invoke(cli, ["sample", str(music_run), "--length", "200", "--seed", "2", "--out", str(out),
                                 "--num-samples", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # binary never goes to stdout
    for path in [tmp_path / "song-1.mid", tmp_path / "song-2.mid"]:
        song = mido.MidiFile(path)  # parses
        sounding = {}
        for msg in mido.merge_tracks(song.tracks):
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[(msg.channel, msg.note)] = sounding.get((msg.channel, msg.note), 0) + 1
            elif msg.type in ("note_off", "note_on"):
                sounding[(msg.channel, msg.note)] = sounding.get((msg.channel, msg.note), 0) - 1
        assert all(v <= 0 for v in sounding.values()), "a note hangs to the end of the file"


def test_music_sample_without_out_writes_into_the_run(runner, music_run):
    result = runner.invoke(cli, ["sample", str(music_run), "--seconds", "3", "--seed", "1", "--tempo", "90",
                                 "--program", "40", "--prime", str(MIDI_DIR / "folk_english1.mid")])
    assert result.exit_code == 0, result.output
    written = list((music_run / "samples").glob("*.mid"))
    assert len(written) == 1
    song = mido.MidiFile(written[0])
    programs = {m.program for t in song.tracks for m in t if m.type == "program_change"}
    assert programs == {40}  # the primed tune's pitched parts, at least, are there
    tempos = {round(mido.tempo2bpm(m.tempo)) for t in song.tracks for m in t if m.type == "set_tempo"}
    assert tempos == {90}


def test_info_on_a_music_checkpoint_lists_the_event_vocabulary(runner, music_run):
    result = runner.invoke(cli, ["info", str(music_run)])
    assert result.exit_code == 0, result.output
    assert "midi" in result.stdout and "duration" in result.stdout and "time shift" in result.stdout
    assert "version 3 (note durations)" in result.stdout
    facts = json.loads(runner.invoke(cli, ["info", str(music_run), "--json"]).stdout)
    assert facts["vocab"] == {"kind": "midi", "size": len(miditokens.vocabulary()), "version": 3}


def test_inspect_json_reports_each_file(runner, tmp_path):
    bad = tmp_path / "fake.mid"
    bad.write_text("not midi at all")
    text = tmp_path / "words.txt"
    text.write_text("hello")
    result = runner.invoke(cli, ["inspect", str(MIDI_DIR / "tiny_c_major_scale.mid"), str(bad), "--json"])
    report = json.loads(result.stdout)
    good, broken = report["files"]
    assert good["kind"] == "midi" and good["notes"] == 8 and good["notes_preserved"] == 8 and good["error"] is None
    assert broken["error"] and "fake.mid" in broken["error"] and broken["tokens"] is None
    assert report["vocab_size"] == len(miditokens.vocabulary())
    text_report = json.loads(runner.invoke(cli, ["inspect", str(text), "--json"]).stdout)
    assert text_report["files"][0] == {"path": str(text), "kind": "text", "tokens": 5, "notes": None,
                                       "notes_preserved": None, "error": None}
    assert text_report["vocab_size"] == 4


def test_inspect_never_rounds_a_loss_up_to_100_percent():
    from chargen.cli import display

    assert display.format_share(3332, 3333) == "99.9%"  # 99.97%
    assert display.format_share(8, 8) == "100.0%"
    assert display.format_share(1, 3) == "33.3%"


def test_inspect_roundtrip_writes_what_chargen_hears(runner, tmp_path):
    out = tmp_path / "heard.mid"
    result = runner.invoke(cli, ["inspect", str(MIDI_DIR / "tiny_2tracks_type1.mid"), "--roundtrip", str(out)])
    assert result.exit_code == 0, result.output
    notes = [m for t in mido.MidiFile(out).tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert len(notes) == 16


def test_show_draws_a_piano_roll(runner):
    result = runner.invoke(cli, ["show", str(MIDI_DIR / "drums_beat.mid")])
    assert result.exit_code == 0, result.output
    assert "drums" in result.stdout and "█" in result.stdout


def test_train_reads_stdin(runner, tmp_path):
    result = runner.invoke(cli, ["train", "-", "--steps", "3", *TINY_TRAIN_ARGS, "--out", str(tmp_path / "s")],
                           input=TINY_TEXT)
    assert result.exit_code == 0, result.output
    payload = checkpoint.load(tmp_path / "s" / "last.pt")
    assert payload["corpus"]["files"] == ["-"]
    assert set(payload["vocab"]["tokens"]) == set(TINY_TEXT)


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "chargen", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_resume_extends_the_budget_and_refuses_other_settings(runner, trained_run):
    before = (trained_run / "last.pt").read_bytes()
    result = runner.invoke(cli, ["train", "--resume", str(trained_run), "--steps", "15", "--hidden", "99", "--lr", "0.1"])
    assert result.exit_code == 1
    assert "--hidden 99 (the run has 16)" in result.stderr and "--lr 0.1" in result.stderr
    assert (trained_run / "last.pt").read_bytes() == before
    # the same values as the run's are fine, and the budget may grow
    result = runner.invoke(cli, ["train", "--resume", str(trained_run), "--steps", "15", "--hidden", "16"])
    assert result.exit_code == 0, result.output
    payload = checkpoint.load(trained_run / "last.pt")
    assert payload["state"]["step"] == 15
    assert payload["train_config"]["eval_every"] == 5  # not reset to the default


def test_cli_defaults_match_the_config_dataclasses():
    """Each option maps to a config field of the same name; their defaults must agree."""
    from dataclasses import MISSING, fields

    from chargen.model import ModelConfig
    from chargen.sampling.draw import SampleConfig
    from chargen.training.loop import TrainConfig

    checked = 0
    for command, configs in [("train", [ModelConfig, TrainConfig]), ("sample", [SampleConfig])]:
        params = {p.name: p for p in cli.commands[command].params}
        for config in configs:
            for field in fields(config):
                option = params.get(field.name)
                # options without a default of their own (None, click's unset marker) are chosen later
                has_default = option is not None and isinstance(option.default, (bool, int, float, str))
                if has_default and field.default not in (MISSING, None):
                    assert params[field.name].default == field.default, f"{command} --{field.name}"
                    checked += 1
    assert checked >= 12


def test_dropout_defaults_to_the_corpus_size(runner, tiny_corpus, tmp_path, monkeypatch):
    from chargen.training import dropout

    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "1", *TINY_TRAIN_ARGS, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "--dropout 0.3 (chosen for" in result.stderr
    assert checkpoint.load(tmp_path / "a" / "last.pt")["model_config"]["dropout"] == 0.3
    monkeypatch.setattr(dropout, "SMALL_CORPUS_TOKENS", 100)  # the same corpus, now of medium size
    for budget, expected in ((["--epochs", "3"], 0.2), (["--steps", "1"], 0.0)):  # read 3 times; a short run
        out = tmp_path / f"medium{budget[0]}"
        result = runner.invoke(cli, ["train", str(tiny_corpus), *budget, *TINY_TRAIN_ARGS, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert checkpoint.load(out / "last.pt")["model_config"]["dropout"] == expected, budget
    monkeypatch.setattr(dropout, "LARGE_CORPUS_TOKENS", 200)  # and now large
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--epochs", "3", *TINY_TRAIN_ARGS, "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "d" / "last.pt")["model_config"]["dropout"] == 0.0
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "1", *TINY_TRAIN_ARGS, "--dropout", "0.1",
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "chosen for" not in result.stderr
    assert checkpoint.load(tmp_path / "c" / "last.pt")["model_config"]["dropout"] == 0.1


@pytest.mark.parametrize("budget, expected", [
    (dict(minutes=10), 0.2), (dict(minutes=9.5), 0.0), (dict(minutes=2), 0.0),
    (dict(epochs=10), 0.2), (dict(epochs=2), 0.0),
    (dict(steps=3000), 0.2), (dict(steps=2000), 0.0),  # 3,000 x 16 x 64 tokens: 4.9 passes; 2,000: 2.0
    (dict(minutes=30, steps=2000), 0.0), (dict(minutes=5, epochs=10), 0.0),  # the nearest budget decides
])
def test_medium_corpora_get_dropout_only_for_runs_that_read_them_several_times(budget, expected):
    from chargen.training.dropout import auto_dropout
    from chargen.training.loop import TrainConfig

    assert auto_dropout(1_000_000, TrainConfig(**budget)) == expected
    assert auto_dropout(400_000, TrainConfig(**budget)) == 0.3  # small corpora: always
    assert auto_dropout(20_000_000, TrainConfig(**budget)) == 0.0  # large: never


# -- sample, eval and info over the Python API (issues 10 and 14) ----------------------------------


def test_sample_stop_example_in_the_help_works_as_typed(runner, trained_run, tmp_path):
    """Issue 14.8: the help's `--stop "\\n\\n"` reached chargen as a backslash and an n, and never stopped."""
    import shlex

    help_text = runner.invoke(cli, ["sample", "--help"]).stdout
    example = next(line.strip() for line in help_text.splitlines() if line.strip().startswith("chargen sample")
                   and "--stop" in line)
    args = shlex.split(example)[2:]  # what a POSIX shell hands to chargen
    assert args[args.index("--stop") + 1] == "\\n\\n"  # a backslash and an n, twice
    out = tmp_path / "s.txt"
    result = runner.invoke(cli, ["sample", str(trained_run), *args, "--length", "3000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    without_stop = args[: args.index("--stop")] + args[args.index("--stop") + 2 :]
    result = runner.invoke(cli, ["sample", str(trained_run), *without_stop, "--length", "3000",
                                 "--out", str(tmp_path / "u.txt")])
    assert result.exit_code == 0, result.output
    stopped = 0
    for i in range(1, int(args[args.index("--num-samples") + 1]) + 1):
        full = (tmp_path / f"u-{i}.txt").read_text(encoding="utf-8")
        written = (tmp_path / f"s-{i}.txt").read_text(encoding="utf-8")
        end = full.find("\n\n")
        assert written == (full if end < 0 else full[:end])
        stopped += end >= 0
    assert stopped > 0, "no sample generated the stop string: the test proves nothing"


def test_sample_piped_into_head_exits_0_quietly(trained_run):
    """Issue 10, bug 4: `chargen sample | head -c 10` exited 1, since click handled the broken pipe first."""
    import os
    import subprocess
    import sys

    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent.parent)}
    sample = subprocess.Popen([sys.executable, "-m", "chargen", "sample", str(trained_run), "--length", "300000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert len(sample.stdout.read(10)) == 10
    sample.stdout.close()  # what head does after 10 bytes; the pipe buffer (64 KiB) fills long before 300k
    errors = sample.stderr.read()
    assert sample.wait(timeout=120) == 0
    assert errors.decode() == ""


def test_sample_text_reaches_a_pipe_while_it_is_generated(trained_run):
    """One sample is streamed: its first text arrives long before the generation ends."""
    import os
    import select
    import subprocess
    import sys

    env = os.environ | {"PYTHONPATH": str(Path(__file__).parent.parent)}
    sample = subprocess.Popen([sys.executable, "-m", "chargen", "sample", str(trained_run), "--length", "100000000"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        readable, _, _ = select.select([sample.stdout], [], [], 60)
        assert readable, "no text within 60 s"
        assert os.read(sample.stdout.fileno(), 1 << 16)
        assert sample.poll() is None  # 100 million characters would take hours: it is still generating
    finally:
        sample.kill()
        sample.wait()


def test_streamed_text_is_all_written_in_order_even_when_interrupted(capsys):
    """The 30 ms flush batches pieces, never drops or reorders them, and on Ctrl-C writes
    what was generated before the interrupt."""
    from chargen.cli.sample import _stream_to_stdout

    _stream_to_stdout("All:", iter(["a", "b", "\n", "é"]))
    assert capsys.readouterr().out == "All:ab\né\n"

    def interrupted():
        yield "to be"
        yield ", or not"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stream_to_stdout("", interrupted())
    assert capsys.readouterr().out == "to be, or not"


def test_music_seconds_and_length_whichever_comes_first(runner, music_run, tmp_path):
    """Issue 14.14: --seconds 60 --length 10 ignored --length."""
    out = tmp_path / "short.mid"
    result = runner.invoke(cli, ["sample", str(music_run), "--seconds", "60", "--length", "10", "--seed", "1",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    notes = [m for track in mido.MidiFile(out).tracks for m in track if m.type == "note_on" and m.velocity > 0]
    assert len(notes) <= 10  # at most one note per new event: not a minute of music


def test_info_reports_progress_from_last_and_best_figures_from_best(runner, trained_run, tmp_path):
    """Issue 10, bug 7: `chargen info RUN` reported the step stored in best.pt, not the run's progress."""
    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    last, best = checkpoint.load(run / "last.pt"), checkpoint.load(run / "best.pt")
    best["state"] = best["state"] | {"step": 5, "best_val": 4.25, "history": best["state"]["history"][:1]}
    checkpoint.save(best, run / "best.pt")  # as if validation last improved at step 5
    result = runner.invoke(cli, ["info", str(run), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["step"] == last["state"]["step"] == 10
    assert facts["history"] == [list(row) for row in last["state"]["history"]]
    assert (facts["best_val_bits"], facts["best_step"]) == (4.25, 5)
    table = runner.invoke(cli, ["info", str(run)]).stdout
    assert "10 steps" in table and "4.2500 bits/char at step 5" in table


def test_info_shows_fractional_epochs(runner, trained_run):
    """`info` said "0 epochs" for a run 0.3 of the way through its first pass."""
    facts = json.loads(runner.invoke(cli, ["info", str(trained_run), "--json"]).stdout)
    payload = checkpoint.load(trained_run / "last.pt")
    columns = payload["corpus"]["train_tokens"] // facts["train"]["batch_size"]
    windows = -(-(columns - 1) // facts["train"]["seq_len"])
    assert 0 < facts["epoch"] < 1
    assert facts["epoch"] == pytest.approx(payload["state"]["window"] / windows)
    assert f"{facts['epoch']:.2f} epochs" in runner.invoke(cli, ["info", str(trained_run)]).stdout


def test_progress_line_ends_with_the_last_validation_figure(runner, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line each
    result = runner.invoke(cli, ["train", str(tiny_corpus), "--steps", "10", *TINY_TRAIN_ARGS,
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    last_eval = [line for line in lines if line.startswith("step     10")][0]
    progress = [line for line in lines if line.startswith("training")][-1]
    val = last_eval.split("val ")[1].split()[0]
    assert f"val {val}" in progress, (last_eval, progress)
