"""A training run from the options of `chargen train`: checked, then started or resumed.

`chargen train` and `chargen.train()` both call run_from_options, so the command line
and the Python API take the same options, by the same field names, with the same checks
and defaults:

    run = run_from_options(["data/tinyshakespeare.txt"], {"hidden_size": 256, "minutes": 5})
    run = run_from_options([], {"steps": 5000}, resume="checkpoints/tinyshakespeare-20261121-120000")
    execute(run, callback)                      # chargen/training/run.py

An option is a field of ModelConfig or TrainConfig (OPTIONS lists them). One left out
takes its field's default, except dropout, which new_run chooses for the corpus size.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, Optional, Sequence

from chargen.data.corpus import Reading
from chargen.errors import ArgumentError
from chargen.model import ModelConfig
from chargen.training.distributed import World
from chargen.training.loop import TrainConfig
from chargen.training.resume import resume_run
from chargen.training.run import Run, new_run

MODEL_OPTIONS = tuple(f.name for f in fields(ModelConfig) if f.name != "vocab_size")  # vocab_size: the corpus's
TRAIN_OPTIONS = tuple(f.name for f in fields(TrainConfig))
OPTIONS = MODEL_OPTIONS + TRAIN_OPTIONS


def run_from_options(corpus: Sequence[str], options: dict, *, resume: Optional[str] = None,
                     out: Optional[str] = None, force: bool = False, format: Optional[str] = None,
                     device: str = "auto", world: Optional[World] = None,
                     names: Optional[dict[str, str]] = None,
                     reading: Optional[Callable[[Reading], None]] = None) -> Run:
    """A run ready to execute(): started on the `corpus` files with `options`, or `resume`d.

    `options` holds only what the caller chose (field name -> value). A new run's options
    are checked before the corpus is read, an ArgumentError naming the field. A resumed
    run keeps its model and settings: the options change only what a resume may change
    (a budget, eval_every, precision), and one that differs from the run's is refused,
    named as `names` spells it (the CLI's "--hidden"; the field name by default).
    `reading` hears how reading the corpus goes (data/corpus.py's Reading).
    """
    unknown = [name for name in options if name not in OPTIONS]
    assert not unknown, f"not options of a run: {unknown}"  # callers check names, each in its own words
    if resume is not None:
        names = names or {}
        settings = {name: (names.get(name, name), value) for name, value in options.items()}
        return resume_run(resume, options, corpus, force=force, device=device, world=world, settings=settings,
                          reading=reading)
    if not corpus:
        raise ArgumentError("corpus", "is needed to start a run (or give a run to resume)")
    config = TrainConfig(**{name: value for name, value in options.items() if name in TRAIN_OPTIONS})
    model_options = {name: options[name] for name in MODEL_OPTIONS if name in options}
    ModelConfig(vocab_size=1, **(model_options | {"dropout": options.get("dropout") or 0.0}))  # checked now
    model_options = {f.name: f.default for f in fields(ModelConfig) if f.name in MODEL_OPTIONS} | model_options
    model_options["dropout"] = options.get("dropout")  # None: new_run chooses it for the corpus size
    return new_run(list(corpus), model_options, config, out=out, force=force, format=format, device=device,
                   world=world, reading=reading)
