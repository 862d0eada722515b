"""chargen.train(): start or resume a training run from Python, reporting its progress in plain text.

    import chargen
    run = chargen.train("data/tinyshakespeare.txt", minutes=5, hidden_size=256)
    run = chargen.train(resume=run, steps=5000)

A thin layer, as `chargen train` is, over chargen/training/launch.py (a run from options),
run.py (execute) and signals.py (a clean stop); the TBPTT loop lives in loop.py.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from chargen.training.checkpoint import PathLike

# The CLI's short option names, accepted too, so a command line translates word for word.
TRAIN_ALIASES = {"hidden": "hidden_size", "layers": "num_layers", "embed": "embed_dim"}


def train(corpus: Union[PathLike, Sequence[PathLike], None] = None, out: Optional[PathLike] = None, *,
          resume: Optional[PathLike] = None, force: bool = False, format: Optional[str] = None,
          device: str = "auto", progress=None, callback=None, **options) -> Path:
    """Train a model as `chargen train` does, and return its run directory.

    `corpus` is a text file, a folder of .txt or MIDI files, or a list of them;
    `out` the run directory (default checkpoints/<corpus>-<time>). The options
    are those of `chargen train` under their field names (hidden_size=256,
    num_layers=2, steps=500, minutes=5, lr=3e-3, weight_drop=0.3, ...; the CLI's
    hidden, layers and embed work too). resume=RUN continues a run where it
    stopped (a budget given with it replaces the run's). `progress`: True prints
    a plain line per validation on stderr, False nothing, None (the default)
    prints in a terminal or a notebook and stays quiet elsewhere (a pipe, a log,
    a test); a function is called as progress(event, info) for every training
    event, as is callback.

    A signal stops training as it stops `chargen train` (chargen/training/signals.py):
    the step finishes and a checkpoint is saved, then Ctrl-C (a notebook's stop
    button) raises KeyboardInterrupt, and SIGTERM or SIGHUP goes on to the
    process's own handlers (by default, ending it). resume=RUN goes on from there.
    """
    from chargen.training.launch import OPTIONS, run_from_options
    from chargen.training.run import execute
    from chargen.training.signals import StopOnSignal

    options = {TRAIN_ALIASES.get(name, name): value for name, value in options.items()}
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"train() got unknown option(s): {', '.join(unknown)}")
    if corpus is None:
        corpus_paths = []
    elif isinstance(corpus, (str, os.PathLike)):
        corpus_paths = [os.fspath(corpus)]
    else:
        corpus_paths = [os.fspath(c) for c in corpus]
    run = run_from_options(corpus_paths, options, resume=None if resume is None else os.fspath(resume),
                           out=None if out is None else os.fspath(out), force=force, format=format, device=device)
    on_event = _reporter(run, progress, callback)
    with StopOnSignal() as stop:
        execute(run, on_event, should_stop=stop.is_set)
    if stop.signum is None:
        return run.directory
    if stop.signum == signal.SIGINT:
        raise KeyboardInterrupt(f"training stopped; a checkpoint was saved: resume with resume={str(run.directory)!r}")
    stop.pass_on()  # SIGTERM, SIGHUP: the process's own handler, or the default (it ends here)
    return run.directory  # a handler that returned: the run stopped, saved, and can be resumed


def _reporter(run, progress, callback):
    """The function execute() calls with each training event: the plain report when asked
    (or, by default, in a terminal or a notebook), then the caller's functions."""
    if progress is None:  # in a terminal or a notebook, not in a pipe, a log or a test
        progress = sys.stderr.isatty() or "ipykernel" in sys.modules
    report = PlainProgress(run) if progress is True else None
    if report is not None:
        for note in run.notes:
            report.line(f"note: {note}")

    def on_event(event: str, info: dict) -> None:
        if report is not None:
            report(event, info)
        if callable(progress):
            progress(event, info)
        if callback is not None:
            callback(event, info)

    return on_event


class PlainProgress:
    """chargen.train()'s report: a line per validation and one at the end, on stderr, in plain
    text that reads the same in a terminal, a notebook cell or a log (the CLI draws its own)."""

    def __init__(self, run, stream=None):
        self.run, self.stream = run, stream or sys.stderr
        self.unit = "char" if run.corpus.kind == "text" else "token"

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: str, info: dict) -> None:
        if event == "eval":
            val = info["val_bits"]
            best = " best" if info.get("is_best") else ""
            per_note = info.get("val_bits_per_note")
            per_note = "" if per_note is None else f" ({per_note:.3f} bits/note)"
            cold = info.get("cold_bits")
            self.line(f"step {self.run.state.step:>6}  train {info['train_bits']:.4f}  val {val:.4f} bits/{self.unit}"
                      f"{per_note}  cold {'-' if cold is None else f'{cold:.4f}'}  {info['tokens_per_s']:,.0f} tok/s{best}")
        elif event == "stop" and info.get("interrupted"):
            self.line("interrupted: a checkpoint was saved")
