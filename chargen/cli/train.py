"""`chargen train`: its options, a run built from them (training/launch.py), its progress drawn, a clean stop."""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional

import click
from rich.markup import escape

from chargen.cli import display
from chargen.cli.display import err
from chargen.cli.options import (
    MAX_SIZE,
    Real,
    default_of,
    given_on_command_line,
    named_options,
    whole,
)
from chargen.data.augment import AUGMENTS, MAX_TRANSPOSE
from chargen.model import ModelConfig
from chargen.training.launch import OPTIONS
from chargen.training.loop import TrainConfig


@click.command()
@click.argument("corpus", nargs=-1)
@click.option("--cell", type=click.Choice(["lstm", "gru", "rnn"]), default=default_of(ModelConfig, "cell"), show_default=True, help="Recurrent cell.")
@click.option("--layers", "num_layers", type=whole(1, MAX_SIZE), default=default_of(ModelConfig, "num_layers"), show_default=True, help="Stacked recurrent layers.")
@click.option("--hidden", "hidden_size", type=whole(1, MAX_SIZE), default=default_of(ModelConfig, "hidden_size"), show_default=True, help="Hidden units per layer.")
@click.option("--embed", "embed_dim", type=whole(1, MAX_SIZE), default=default_of(ModelConfig, "embed_dim"), show_default=True, help="Embedding size.")
@click.option("--dropout", type=Real(0, 1, max_open=True), help="Dropout between layers (default: 0.3 for corpora under 500k tokens; 0.2 under 10M when the budget reads them 3+ times; else 0).")
@click.option("--weight-drop", type=Real(0, 1, max_open=True), default=default_of(ModelConfig, "weight_drop"), show_default=True, help="DropConnect on the recurrent weights (AWD-LSTM), a new mask each step.")
@click.option("--embed-dropout", type=Real(0, 1, max_open=True), default=default_of(ModelConfig, "embed_dropout"), show_default=True, help="Locked dropout on the embedding output: one mask per stream and window.")
@click.option("--locked-dropout", type=Real(0, 1, max_open=True), default=default_of(ModelConfig, "locked_dropout"), show_default=True, help="Locked dropout between layers and before the output layer: one mask per stream and window.")
@click.option("--seq-len", type=whole(1), default=default_of(TrainConfig, "seq_len"), show_default=True, help="Tokens per TBPTT window.")
@click.option("--batch-size", type=whole(1), default=default_of(TrainConfig, "batch_size"), show_default=True, help="Parallel streams per step.")
@click.option("--lr", type=Real(0, 1, min_open=True), default=default_of(TrainConfig, "lr"), show_default=True, help="AdamW learning rate.")
@click.option("--weight-decay", type=Real(min=0), default=default_of(TrainConfig, "weight_decay"), show_default=True, help="AdamW's decoupled weight decay.")
@click.option("--lr-min", type=Real(0, 1), default=default_of(TrainConfig, "lr_min"), show_default=True, help="Final learning rate, as a fraction of --lr (cosine decay).")
@click.option("--clip", type=Real(min=0, min_open=True), default=default_of(TrainConfig, "clip"), show_default=True, help="Max gradient norm.")
@click.option("--epochs", type=Real(min=0, min_open=True), help="Stop after this many passes (default 10 if no budget is given).")
@click.option("--steps", type=whole(1), help="Stop after this many optimizer steps (whole run).")
@click.option("--minutes", type=Real(min=0, min_open=True), help="Stop after this much training time (whole run).")
@click.option("--val-frac", type=Real(0, 1, max_open=True), default=default_of(TrainConfig, "val_frac"), show_default=True, help="Fraction at the end of each file held out for validation.")
@click.option("--eval-every", type=whole(1), default=default_of(TrainConfig, "eval_every"), show_default=True, help="Steps between validations and checkpoints.")
@click.option("--seed", type=whole(0), default=default_of(TrainConfig, "seed"), show_default=True, help="Random seed.")
@click.option("--encoding-errors", type=click.Choice(["strict", "replace"]), default=default_of(TrainConfig, "encoding_errors"), show_default=True, help="Invalid UTF-8 in text: an error, or replace each bad byte with U+FFFD.")
@click.option("--line-endings", type=click.Choice(["normalize", "keep"]), default=default_of(TrainConfig, "line_endings"), show_default=True, help="Text: read \\r\\n and \\r as \\n, or keep line endings as they are.")
@click.option("--augment", type=click.Choice(AUGMENTS), default=default_of(TrainConfig, "augment"), show_default=True, help="Music: each training piece in a new key (transpose) or tempo (tempo) every epoch, or both; auto: the measured default (none).")
@click.option("--transpose", type=whole(0, MAX_TRANSPOSE), default=default_of(TrainConfig, "transpose"), show_default=True, help="With --augment: semitones a piece may move either way.")
@click.option("--max-stream-mb", type=whole(1), default=default_of(TrainConfig, "max_stream_mb"), show_default=True, help="A corpus read from a pipe, FIFO or stdin stops with an error past this many MiB.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=default_of(TrainConfig, "precision"), show_default=True, help="Products in bf16 (mixed precision) or fp32; auto: bf16 where the hardware has it.")
@click.option("--format", "format", type=click.Choice(["text", "midi"]), help="Force the corpus kind (default: detected).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: checkpoints/<corpus>-<time>).")
@click.option("--resume", callback=lambda ctx, param, value: _resume_target(value), metavar="RUN|auto",
              help="Continue a run (directory or checkpoint) where it stopped; 'auto' with --out DIR: resume DIR's run if it has one, else start it.")
@click.option("--single-process-rate", type=Real(min=0, min_open=True), metavar="TOKENS/S",
              help="Under torchrun: one process's tokens/s on this machine (from a one-process run's summary), to print the scaling efficiency.")
@click.option("--force", is_flag=True, help="Overwrite an existing run directory; resume on a changed corpus.")
def train(corpus, resume, single_process_rate, out, force, format, device, **options):
    """Train a model on CORPUS: text files, a folder of .txt or MIDI files, or - for stdin.

    Training stops at --epochs, --steps or --minutes, whichever comes first;
    Ctrl-C saves a checkpoint you can --resume. A budget given with --resume
    replaces the run's budget. --resume auto --out DIR starts the run in DIR, or
    resumes it if DIR already holds one: one command for the first start and
    every restart (torchrun --max-restarts, cron).

    \b
    Example:
      chargen train data/tinyshakespeare.txt --minutes 10
      chargen train data/bach/ --cell gru --hidden 256
      chargen train --resume checkpoints/tinyshakespeare-20261121-120000 --steps 5000
      chargen train data/tinyshakespeare.txt --out checkpoints/ts --resume auto --steps 5000
      torchrun --nproc_per_node=4 -m chargen train data/tinyshakespeare.txt
    """
    from chargen.device import resolve_device
    from chargen.training import distributed
    from chargen.training.launch import run_from_options
    from chargen.training.resume import auto_resume_target
    from chargen.training.run import execute
    from chargen.training.signals import StopOnSignal

    ctx = click.get_current_context()
    world = distributed.start(resolve_device(device))  # one process unless launched by torchrun
    ctx.call_on_close(world.stop)
    if not world.is_main:
        err.quiet = True  # only rank 0 reports
    automatic = resume == "auto"
    if automatic:
        if out is None:
            raise click.UsageError("--resume auto needs --out DIR: the run directory to start, or to resume")
        resume = auto_resume_target(out, world)
    given = given_on_command_line(ctx)
    options = {name: value for name, value in ctx.params.items() if name in OPTIONS}
    if resume:
        options = {name: value for name, value in options.items() if name in given}
        for name in ("out", "format"):  # the run already has its directory and corpus kind
            if name in given and not automatic:
                err.print(f"[yellow]note:[/] a resumed run stays as it is; ignoring --{name}")
    elif not corpus:
        raise click.UsageError("give a CORPUS to train on, or --resume a run")
    names = {p.name: p.opts[0] for p in ctx.command.params if p.opts}
    with named_options(names), display.reading_progress(err) as reading:
        run = run_from_options(corpus, options, resume=resume or None, out=out, force=force, format=format,
                               device=device, world=world, names=names, reading=reading)
    for note in run.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    _print_run_header(run)
    with StopOnSignal(on_first=_say_stopping) as stop, display.training_progress(run, err) as reporter:
        execute(run, reporter, should_stop=stop.is_set)
    _print_summary(run, reporter, single_process_rate)
    if stop.is_set():
        err.print(f"[yellow]Stopped.[/] Resume with: chargen train --resume {escape(str(run.directory))}")
        sys.exit(stop.exit_code())


def _resume_target(value: Optional[str]) -> Optional[str]:
    """--resume takes 'auto' or an existing run directory or checkpoint (./auto for a folder named auto)."""
    if value is None or value == "auto" or os.path.exists(value):
        return value
    raise click.BadParameter(f"{value}: no such run directory or checkpoint (or give 'auto' with --out DIR)")


def _say_stopping(signum: int) -> None:
    """The first signal's line: training goes on to the end of the step, then saves and exits."""
    if signum != getattr(signal, "SIGHUP", None):  # after a hang-up there is no terminal to print to
        err.print("[yellow]Interrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)…[/]")


def _print_run_header(run) -> None:
    m, c = run.model.config, run.config
    params = run.model.num_parameters()
    err.print(
        f"[bold]chargen[/] {m.cell} {m.num_layers}x{m.hidden_size}, {params:,} parameters, "
        f"vocab {m.vocab_size}, {len(run.corpus.train):,} train / {len(run.corpus.val):,} val tokens, "
        f"batch {c.batch_size} x {c.seq_len}, device {run.device}{_world_note(run.world, c.batch_size)}"
    )
    precision = run.precision
    err.print(f"precision: {precision.name} ({escape(precision.reason)})")
    err.print(f"run directory: {escape(str(run.directory))}")


def _world_note(world, batch_size: int) -> str:
    """', 2 processes (32 streams each)' under torchrun; nothing in one process."""
    return f", {world.size} processes ({batch_size // world.size} streams each)" if world.size > 1 else ""


def _print_summary(run, reporter: display.TrainingReporter, single_process_rate: Optional[float] = None) -> None:
    from chargen.training.distributed import scaling

    s = run.state
    rows = [
        ("steps", f"{s.step:,}"),
        ("epochs", f"{s.epoch + s.window / reporter.windows:.2f}"),
        ("tokens seen", f"{s.tokens:,}"),
        ("training time", display.format_duration(s.elapsed)),
        ("throughput", f"{reporter.tokens_per_s:,.0f} tokens/s"),
    ]
    if run.world.size > 1:
        per_process, efficiency = scaling(reporter.tokens_per_s, run.world.size, single_process_rate)
        rows.append(("per process", f"{per_process:,.0f} tokens/s ({run.world.size} processes)"))
        rows.append(("scaling efficiency", "give --single-process-rate TOKENS/S to compare" if efficiency is None else
                     f"{efficiency:.0%} of {run.world.size} x {single_process_rate:,.0f} tokens/s (the single-process rate given)"))
    # Every validation reads the same eval_tokens held-out tokens; where that is not all of them,
    # the last one's reading of the whole set is shown apart.
    capped = reporter.last_val_all is not None and reporter.last_val_all != reporter.last_val
    rows += [
        ("final val", f"{display.format_bits(reporter.last_val)} bits/{reporter.unit}"
                      + ("" if reporter.last_val_per_note is None else f", {reporter.last_val_per_note:.4f} bits/note")
                      + (f" (on {run.config.eval_tokens:,} held-out tokens, as every validation)" if capped else "")),
        *([("all held-out", f"{display.format_bits(reporter.last_val_all)} bits/{reporter.unit} "
                            f"(all {len(run.corpus.val):,} tokens)")] if capped else []),
        ("cold start", f"{display.format_bits(reporter.last_cold)} bits/{reporter.unit} "
                       "(read from the start state, as a sample begins)"),
        ("best val", f"{display.format_bits(s.best_val)} bits/{reporter.unit}"),
        ("run", str(run.directory)),
        ("sample", f"chargen sample {run.directory}"),
    ]
    err.print(display.key_value_table("Summary", rows))
