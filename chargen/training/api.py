"""chargen.train(): start or resume a training run from Python, reporting its progress in plain text.

    import chargen
    run = chargen.train("data/tinyshakespeare.txt", minutes=5, hidden_size=256)
    run = chargen.train(resume=run, steps=5000)

A thin layer over chargen.training.run (new_run, resume_run, execute), as `chargen train`
is; the TBPTT loop itself lives in chargen/training/loop.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

from chargen.errors import ArgumentError
from chargen.model import ModelConfig
from chargen.training.checkpoint import PathLike

# The CLI's short option names, accepted too, so a command line translates word for word.
TRAIN_ALIASES = {"hidden": "hidden_size", "layers": "num_layers", "embed": "embed_dim"}
MODEL_OPTIONS = ("cell", "num_layers", "hidden_size", "embed_dim", "dropout")


def train(corpus: Union[PathLike, Sequence[PathLike], None] = None, out: Optional[PathLike] = None, *,
          resume: Optional[PathLike] = None, force: bool = False, format: Optional[str] = None,
          device: str = "auto", progress=None, callback=None, **options) -> Path:
    """Train a model as `chargen train` does, and return its run directory.

    `corpus` is a text file, a folder of .txt or MIDI files, or a list of them;
    `out` the run directory (default checkpoints/<corpus>-<time>). The options
    are those of `chargen train` under their field names (hidden_size=256,
    num_layers=2, steps=500, minutes=5, lr=3e-3, ...; the CLI's hidden, layers
    and embed work too). resume=RUN continues a run where it stopped (a budget
    given with it replaces the run's). `progress`: True prints a plain line per
    validation on stderr, False nothing, None (the default) prints in a terminal
    or a notebook and stays quiet elsewhere (a pipe, a log, a test); a function
    is called as progress(event, info) for every training event, as is callback.

    The first interrupt (Ctrl-C, a notebook's stop button) finishes the step and
    saves a checkpoint, then KeyboardInterrupt is raised; resume=RUN goes on.
    """
    from dataclasses import fields as dataclass_fields

    from chargen.training.loop import TrainConfig
    from chargen.training.run import execute, new_run, resume_run

    options = {TRAIN_ALIASES.get(name, name): value for name, value in options.items()}
    train_fields = {f.name for f in dataclass_fields(TrainConfig)}
    unknown = sorted(set(options) - train_fields - set(MODEL_OPTIONS))
    if unknown:
        raise TypeError(f"train() got unknown option(s): {', '.join(unknown)}")
    if corpus is None:
        corpus_paths = []
    elif isinstance(corpus, (str, os.PathLike)):
        corpus_paths = [os.fspath(corpus)]
    else:
        corpus_paths = [os.fspath(c) for c in corpus]
    if resume is not None:
        settings = {name: (name, value) for name, value in options.items()}  # named as the caller named them
        run = resume_run(os.fspath(resume), options, corpus_paths, force=force, device=device, settings=settings)
    else:
        if not corpus_paths:
            raise ArgumentError("corpus", "is needed to start a run (or give resume=RUN)")
        try:
            config = TrainConfig(**{k: v for k, v in options.items() if k in train_fields})
            model_options = {k: options.get(k, getattr(ModelConfig, k)) for k in MODEL_OPTIONS if k != "dropout"}
            model_options["dropout"] = options.get("dropout")  # None: chosen for the corpus size
            ModelConfig(vocab_size=1, **(model_options | {"dropout": model_options["dropout"] or 0.0}))
        except ValueError as e:  # checked before the corpus is read
            raise ArgumentError("options", f"out of range: {e}") from e
        run = new_run(corpus_paths, model_options, config, out=None if out is None else os.fspath(out),
                      force=force, format=format, device=device)
    _train_with_progress(run, execute, progress, callback)
    return run.directory


def _train_with_progress(run, execute, progress, callback) -> None:
    """Train the run, reporting its progress when asked, stopping cleanly at the first interrupt."""
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

    stop = _FirstInterruptStops()
    with stop:
        execute(run, on_event, should_stop=stop.is_set)
    if stop.is_set():
        raise KeyboardInterrupt(f"training stopped; a checkpoint was saved: resume with resume={str(run.directory)!r}")


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
            self.line(f"step {self.run.state.step:>6}  train {info['train_bits']:.4f}  val {val:.4f} bits/{self.unit}  "
                      f"{info['tokens_per_s']:,.0f} tok/s{best}")
        elif event == "stop" and info.get("interrupted"):
            self.line("interrupted: a checkpoint was saved")


class _FirstInterruptStops:
    """While active, the first SIGINT asks training to stop after the step (and save); a
    second one interrupts at once. Only in the main thread, where Python delivers signals."""

    def __init__(self):
        self.hits = 0

    def is_set(self) -> bool:
        return self.hits > 0

    def _handler(self, signum, frame):
        self.hits += 1
        if self.hits > 1:
            raise KeyboardInterrupt

    def __enter__(self):
        import signal
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
