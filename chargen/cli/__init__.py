"""The chargen command line: a thin click shell over the library.

Results (generated text, figures asked for) go to stdout; progress, tables,
warnings and errors go to stderr, so ``chargen sample > out.txt`` captures only
text. Every expected failure is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.markup import escape

from chargen import __version__
from chargen.cli import display
from chargen.errors import ArgumentError, ChargenError
from chargen.model import ModelConfig
from chargen.sampling.generate import SampleConfig
from chargen.training.loop import TrainConfig

err = Console(stderr=True, highlight=False)


# Raised by click 8.2 and later for a bare `chargen`; older versions print the help themselves.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class ChargenGroup(click.Group):
    """A click group whose failures are always one line on stderr, never a traceback."""

    def main(self, args=None, prog_name=None, **extra):
        try:
            return super().main(args=args, prog_name=prog_name or "chargen", standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except _NO_ARGS_IS_HELP as e:  # bare `chargen`: its help, as --help prints it
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            where = f"{e.ctx.command_path}: " if e.ctx else ""
            click.echo(f"Error: {where}{e.format_message()}", err=True)
            sys.exit(2)
        except (click.ClickException, ChargenError) as e:
            message = e.format_message() if isinstance(e, click.ClickException) else str(e)
            click.echo(f"Error: {message}", err=True)
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("Aborted.", err=True)
            sys.exit(130)

    def invoke(self, ctx: click.Context):
        # Caught here, inside click: click's own main() would turn a broken pipe into exit 1.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `chargen sample | head`: the reader left, which is fine
            _leave_quietly_after_broken_pipe()


def _leave_quietly_after_broken_pipe() -> None:
    """Exit 0 without a word, as Unix tools do when the reader of their output goes away.

    stdout is pointed at /dev/null first: otherwise Python's final flush of the
    text still buffered for the closed pipe fails again at exit (see the Python
    docs, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test runner's capture)
        pass
    sys.exit(0)


def build(cls, **options):
    """Build a config dataclass from CLI options, turning range errors into usage errors
    that name the option the user typed (--lr), not the field behind it (lr)."""
    try:
        return cls(**options)
    except ValueError as e:
        message = str(e)
        ctx = click.get_current_context(silent=True)
        for param in ctx.command.params if ctx else ():
            if isinstance(param, click.Option) and message.startswith(f"{param.name} "):
                message = param.opts[0] + message[len(param.name):]
                break
        raise click.UsageError(message) from e


# -- numbers on the command line ----------------------------------------------------------
#
# Every numeric option has a type that refuses, while click parses the command line (so
# before any file is read or any work is done), what the code behind it cannot use:
# nan and inf, which slip through every comparison-based range check, and integers
# beyond what a seed, a checkpoint's int64 or a tensor size can hold.

MAX_INT = 2**63 - 1  # torch seeds and checkpoint integers are 64-bit
MAX_SIZE = 65_536  # layers, hidden units, embedding, parallel samples: far past what fits in memory
MAX_SECONDS = 86_400.0  # music to generate or to prime with: a day


class Real(click.FloatRange):
    """A float range that also refuses nan and infinity."""

    name = "float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Whole(click.IntRange):
    """An integer range bounded on both sides; the 64-bit ceiling goes unsaid in --help."""

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if self.max == MAX_INT and number > MAX_INT:
            self.fail(f"{number} is too large (at most {MAX_INT}).", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        return f"x>={self.min}" if self.max == MAX_INT else super()._describe_range()


def whole(minimum: int = 0, maximum: int = MAX_INT) -> Whole:
    """An integer option's type: `minimum` to `maximum`, both included."""
    return Whole(minimum, maximum)


def default_of(config_class, name: str):
    """The default of a config dataclass field: the one place where defaults live."""
    return next(f.default for f in dataclasses.fields(config_class) if f.name == name)


@click.group(cls=ChargenGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="chargen")
def cli():
    """Teach a recurrent neural network to write: text one character at a time,
    music one MIDI event at a time.

    \b
    Example:
      chargen train data/tinyshakespeare.txt --minutes 5
      chargen sample --temp 0.8
    """


def main():
    """Console-script entry point."""
    cli.main()


# -- train ------------------------------------------------------------------------------


@cli.command()
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
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=default_of(TrainConfig, "precision"), show_default=True, help="Products in bf16 (mixed precision) or fp32; auto: bf16 where the hardware has it.")
@click.option("--format", "format", type=click.Choice(["text", "midi"]), help="Force the corpus kind (default: detected).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: checkpoints/<corpus>-<time>).")
@click.option("--resume", callback=lambda ctx, param, value: _resume_target(value), metavar="RUN|auto",
              help="Continue a run (directory or checkpoint) where it stopped; 'auto' with --out DIR: resume DIR's run if it has one, else start it.")
@click.option("--single-process-rate", type=Real(min=0, min_open=True), metavar="TOKENS/S",
              help="Under torchrun: one process's tokens/s on this machine (from a one-process run's summary), to print the scaling efficiency.")
@click.option("--force", is_flag=True, help="Overwrite an existing run directory; resume on a changed corpus.")
def train(corpus, cell, num_layers, hidden_size, embed_dim, dropout, weight_drop, embed_dropout, locked_dropout, resume,
          single_process_rate, out, force, format, device, **options):
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
    from chargen.training import distributed
    from chargen.training.run import auto_resume_target, execute, new_run, resolve_device, resume_run

    world = distributed.start(resolve_device(device))  # one process unless launched by torchrun
    click.get_current_context().call_on_close(world.stop)
    if not world.is_main:
        err.quiet = True  # only rank 0 reports
    automatic = resume == "auto"
    if automatic:
        if out is None:
            raise click.UsageError("--resume auto needs --out DIR: the run directory to start, or to resume")
        resume = auto_resume_target(out, world)
    if resume:
        ctx = click.get_current_context()
        given = _given_on_command_line(ctx)
        overrides = {k: v for k, v in options.items() if k in given}
        settings = {p.name: (p.opts[0], ctx.params[p.name]) for p in ctx.command.params if p.name in given}
        for name in ("out", "format"):  # the run already has its directory and corpus kind
            if name in given and not automatic:
                err.print(f"[yellow]note:[/] a resumed run stays as it is; ignoring --{name}")
        run = resume_run(resume, overrides, corpus, force=force, device=device, world=world, settings=settings)
    else:
        if not corpus:
            raise click.UsageError("give a CORPUS to train on, or --resume a run")
        config = build(TrainConfig, **options)
        model_options = dict(cell=cell, num_layers=num_layers, hidden_size=hidden_size, embed_dim=embed_dim, dropout=dropout,
                             weight_drop=weight_drop, embed_dropout=embed_dropout, locked_dropout=locked_dropout)
        build(ModelConfig, vocab_size=1, **(model_options | {"dropout": dropout or 0.0}))  # validate before reading
        run = new_run(corpus, model_options, config, out=out, force=force, format=format, device=device, world=world)
    for note in run.notes:
        err.print(f"[yellow]note:[/] {escape(note)}")
    _print_run_header(run)
    stop = _InterruptFlag()
    with stop, display.training_progress(run, err) as reporter:
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


def _given_on_command_line(ctx: click.Context) -> set[str]:
    """The names of the options the user actually typed (not defaults)."""
    from click.core import ParameterSource

    return {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}


class _InterruptFlag:
    """First Ctrl-C: finish the step, save, exit. Second Ctrl-C: stop at once.

    `kill PID` (SIGTERM) and a closed terminal (SIGHUP) count as a first Ctrl-C,
    so they too end with a saved checkpoint instead of losing the steps since the last one.
    """

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.hits = 0
        self.signum = None  # the first signal received

    def is_set(self) -> bool:
        return self.hits > 0

    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM

    def _handler(self, signum, frame):
        self.hits += 1
        if self.hits > 1:
            raise KeyboardInterrupt
        self.signum = signum
        if signum != getattr(signal, "SIGHUP", None):  # after a hang-up there is no terminal to print to
            err.print("[yellow]Interrupted: saving a checkpoint after this step (Ctrl-C again to quit at once)…[/]")

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, previous in self._previous.items():
            signal.signal(s, previous)


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
    rows += [
        ("final val", f"{display.format_bits(reporter.last_val)} bits/{reporter.unit}"),
        ("best val", f"{display.format_bits(s.best_val)} bits/{reporter.unit}"),
        ("run", str(run.directory)),
        ("sample", f"chargen sample {run.directory}"),
    ]
    err.print(display.key_value_table("Summary", rows))


# -- sample -----------------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT]", required=False)
@click.option("--temp", "temperature", type=Real(min=0), default=default_of(SampleConfig, "temperature"), show_default=True, help="Sampling temperature; 0 is greedy.")
@click.option("--top-k", type=whole(1), help="Sample only from the k most likely tokens.")
@click.option("--top-p", type=Real(0, 1, min_open=True), help="Sample from the smallest set of tokens with probability >= p.")
@click.option("--prime", help="Text to continue; for a music model, a MIDI file to continue.")
@click.option("--length", type=whole(0), default=default_of(SampleConfig, "length"), show_default=True, help="Tokens to generate.")
@click.option("--num-samples", type=whole(1, MAX_SIZE), default=default_of(SampleConfig, "num_samples"), show_default=True, help="Samples, generated in parallel.")
@click.option("--seed", type=whole(0), help="Random seed (default: fresh randomness each time).")
@click.option("--stop", help="End a text sample when it generates this text (not included).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout (FILE-1, FILE-2… for several samples).")
@click.option("--seconds", type=Real(0, MAX_SECONDS, min_open=True), help="Music: generate this much new music (see above for --length).")
@click.option("--prime-seconds", type=Real(0, MAX_SECONDS, min_open=True), default=10.0, show_default=True, help="Music: how much of the --prime piece to continue.")
@click.option("--tempo", type=Real(min=1, max=1000), help="Music: write the file at this tempo (BPM).")
@click.option("--program", type=whole(0, 127), help="Music: play every pitched part with this General MIDI program.")
@click.option("--omit-prime", is_flag=True, help="Music: write only the new music, not the --prime piece it continues.")
@click.option("--from-manifest", type=click.Path(dir_okay=False), help="Music: generate again, exactly, the sample a manifest (FILE.mid.json) describes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True, help="Products in bf16 or fp32; auto: bf16 where the hardware has it. A seed repeats its text only in the same precision.")
def sample(checkpoint_path, prime, seed, stop, out, seconds, prime_seconds, tempo, program, omit_prime,
           from_manifest, device, precision, temperature, top_k, top_p, length, num_samples):
    """Generate from a trained model. CHECKPOINT is a checkpoint file or a run
    directory (its best checkpoint); omitted, the latest run under ./checkpoints.

    A text model prints to stdout; a music model writes .mid files (--out, or
    its run directory) and draws a piano roll. With --seconds, a music sample
    ends at that much new music or, if --length is given too, at --length
    tokens, whichever comes first. Beside each music file, FILE.mid.json
    records the checkpoint, seed and options: --from-manifest FILE.mid.json
    generates that file again, exactly.
    --stop understands \\n, \\t, \\\\ and \\xNN escapes.

    \b
    Example:
      chargen sample --temp 0.8 --length 500
      chargen sample checkpoints/tinyshakespeare-20261121-120000 --prime "ROMEO:" --top-p 0.9
      chargen sample --num-samples 4 --stop "\\n\\n" --seed 7
      chargen sample checkpoints/bach-20261121-120000 --seconds 30 --out song.mid
      chargen sample --from-manifest checkpoints/bach-20261121-120000/samples/sample-20261121-130000.mid.json
    """
    from chargen import api

    given = _given_on_command_line(click.get_current_context())
    if from_manifest:
        _sample_again(checkpoint_path, from_manifest, out, given)
        return
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, n=num_samples)
    with _named_options(SAMPLE_OPTIONS):
        model = api.load(checkpoint_path, device=device, precision=precision)
        if model.kind == "midi":
            if stop is not None:
                raise ArgumentError("stop", "is for text models; this is a music model")
            music = dict(prime=prime, prime_seconds=prime_seconds, seconds=seconds, tempo=tempo, program=program,
                         length=length if "length" in given else None, include_prime=not omit_prime)
            _sample_music(model, options | music, out)
        else:
            for name, value in (("seconds", seconds), ("tempo", tempo), ("program", program),
                                ("omit_prime", omit_prime or None)):
                if value is not None:
                    raise ArgumentError(name, "is for music models; this is a text model")
            _sample_text(model, options, prime, length, _unescape(stop), out)


# The Python parameter behind each sample option, for errors that name the option.
SAMPLE_OPTIONS = {"prime": "--prime", "temperature": "--temp", "top_k": "--top-k", "top_p": "--top-p",
                  "length": "--length", "n": "--num-samples", "seed": "--seed", "stop": "--stop", "out": "--out",
                  "seconds": "--seconds", "prime_seconds": "--prime-seconds", "tempo": "--tempo",
                  "program": "--program", "device": "--device", "batch_size": "--batch-size",
                  "precision": "--precision", "include_prime": "--omit-prime", "omit_prime": "--omit-prime"}


@contextmanager
def _named_options(options: dict[str, str]):
    """Turn the library's ArgumentError ("temperature must be ...") into a usage error
    that names the option the user typed ("--temp must be ...")."""
    try:
        yield
    except ArgumentError as e:
        raise click.UsageError(f"{options.get(e.parameter, e.parameter)} {e.reason}") from e


_ESCAPES = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}


def _unescape(text: Optional[str]) -> Optional[str]:
    r"""Read \n, \t, \r, \0, \\, \xNN and \uNNNN in an option as the characters they name,
    since a shell passes "\n" as a backslash and an n; any other backslash stays as typed."""
    if text is None:
        return None

    def one(match: re.Match) -> str:
        code = match.group(1)
        if code[0] in "xu" and len(code) > 1:
            return chr(int(code[1:], 16))
        return _SIMPLE_ESCAPES.get(code, match.group(0))

    return _ESCAPES.sub(one, text)


# One sample's new text is written once this long has passed since the last write: to the eye
# it comes as it is generated, without a write and a flush for each character (about 10 us
# each, of a 250 us character).
FLUSH_SECONDS = 0.03


def _stream_to_stdout(prime: str, pieces) -> None:
    """Print the prime at once, then each piece as it is generated, flushed every FLUSH_SECONDS."""
    click.echo(prime, nl=False)
    sys.stdout.flush()
    pending, last_flush = [], time.monotonic()
    try:
        for piece in pieces:
            pending.append(piece)
            now = time.monotonic()
            if now - last_flush >= FLUSH_SECONDS:
                click.echo("".join(pending), nl=False)
                sys.stdout.flush()
                pending, last_flush = [], now
    finally:  # also on Ctrl-C: what was generated is shown
        click.echo("".join(pending), nl=False)
        sys.stdout.flush()
    click.echo()


def _sample_text(model, options: dict, prime: Optional[str], length: int, stop: Optional[str], out) -> None:
    from chargen.cli import output

    prime = (prime or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # undecodable argv bytes
    if _is_midi_path(prime):
        raise click.UsageError(f"--prime {prime} is a MIDI file, but this is a text model; prime it with text")
    paths = output.sample_paths(out, options["n"], "text", model.file)  # checked before any work
    pieces = model.stream(prime, length=length, stop=stop, **options)
    if paths is None and options["n"] == 1:  # one sample to the terminal: show it as it comes
        _stream_to_stdout(prime, pieces)
        return
    texts = [prime] * options["n"]
    for step in ([p] for p in pieces) if options["n"] == 1 else pieces:
        texts = [text + piece for text, piece in zip(texts, step)]
    if paths is None:
        for i, text in enumerate(texts):
            err.print(f"[dim]── sample {i + 1} of {len(texts)} ──[/]")
            click.echo(text)
    else:
        for path, text in zip(paths, texts):
            output.write_text(path, text)
            err.print(f"wrote {escape(str(path))}")


def _is_midi_path(text: str) -> bool:
    """Whether a text --prime is really the name of a MIDI file (a likely mix-up)."""
    if "\n" in text or len(text) > 4096 or not os.path.isfile(text):
        return False
    from chargen.music.vocabulary import MIDI_EXTENSIONS, is_midi_file  # no mido: a text model never needs it

    return text.lower().endswith(MIDI_EXTENSIONS) or is_midi_file(text)


def _sample_music(model, options: dict, out, index: Optional[int] = None) -> None:
    """Generate music with Model.generate(**options) and write each file with its manifest.

    `index` (1-based) writes only that sample of the batch (a regeneration).
    """
    from chargen.cli import manifest
    from chargen.music import midifile as midi
    from chargen.cli import output

    paths = output.sample_paths(out, 1 if index else options["n"], "midi", model.file)  # checked before any work
    if options["seed"] is None:  # a fresh seed, drawn here so that the manifest can record it
        options["seed"] = int.from_bytes(os.urandom(6), "little")
    songs = model.generate(**options)
    songs = songs if options["n"] > 1 else [songs]
    numbers = [index] if index else range(1, options["n"] + 1)
    digest = manifest.checkpoint_digest(model.file) if model.file is not None else None
    for path, number in zip(paths, numbers):
        song = songs[number - 1]
        midi.write_midi(song, path)
        if digest is not None:
            manifest.write(path, manifest.build(model.file, digest, options, number,
                                                model.device.type, model.precision.name))
        notes = midi.piano_roll(song)
        err.print(f"wrote {escape(str(path))}: {len(notes)} notes, {song.length:.1f} s")
        if path == paths[0]:
            err.print(display.piano_roll(notes, width=_roll_width(err)))


def _sample_again(checkpoint_path, manifest_file, out, given: set) -> None:
    """`sample --from-manifest`: the sample a manifest describes, generated again from its own settings."""
    from chargen import api
    from chargen.cli import manifest

    others = sorted(SAMPLE_OPTIONS.get(name, name) for name in given - {"from_manifest", "out", "checkpoint_path"})
    if others:
        raise click.UsageError(f"--from-manifest takes its settings from the manifest; drop {', '.join(others)}")
    record = manifest.read(manifest_file)
    model = api.load(checkpoint_path or record["checkpoint"], device=record["device"], precision=record["precision"])
    if model.kind != "midi":
        raise ChargenError(f"{manifest_file}: the manifest is for a music model; {model.file} is a text model")
    manifest.check_sources(record, model.file, manifest_file)
    if out is None:
        name = Path(manifest_file).name.removesuffix(manifest.SUFFIX)
        out = Path(manifest_file).with_name(f"{Path(name).stem}-again{Path(name).suffix or '.mid'}")
    with _named_options(SAMPLE_OPTIONS):
        _sample_music(model, dict(record["options"]), out, index=record["sample"])


# -- eval -------------------------------------------------------------------------------


@cli.command("eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT")
@click.argument("file", type=click.Path(exists=True))
@click.option("--batch-size", type=whole(1), default=32, show_default=True, help="Parallel streams.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True, help="Products in bf16 or fp32; auto: bf16 where the hardware has it.")
def eval_command(checkpoint_path, file, batch_size, precision):
    """Print the bits per character (per token, for music) of FILE under a model.

    \b
    Example:
      chargen eval checkpoints/tinyshakespeare-20261121-120000 held_out.txt
    """
    from chargen import api

    with _named_options(SAMPLE_OPTIONS | {"file": "FILE"}):
        model = api.load(checkpoint_path, precision=precision)
        score = model.score_file(file, batch_size=batch_size)
    for path, reason in score.skipped:
        err.print(f"[yellow]note:[/] skipped {escape(str(path))}: {escape(reason)}", soft_wrap=True)
    unit = "character" if model.kind == "text" else "token"
    err.print(f"{score.tokens:,} tokens, precision {model.precision.name} ({escape(model.precision.reason)})")
    click.echo(f"{score.bits:.4f} bits per {unit}")


# -- info -------------------------------------------------------------------------------


@cli.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT_OR_RUN")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
def info(checkpoint_path, as_json):
    """Describe a checkpoint: config, vocabulary, size, progress and loss curves.

    \b
    Example:
      chargen info checkpoints/tinyshakespeare-20261121-120000
    """
    import json

    from chargen import api

    model = api.load(checkpoint_path)
    facts = model.info()
    vocab = model.vocab
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    out = Console(highlight=False)
    m = facts["model"]
    unit = "char" if vocab.kind == "text" else "token"
    rows = [
        ("model", f"{m['cell']} {m['num_layers']} x {m['hidden_size']}, embedding {m['embed_dim']}, dropout {m['dropout']}"
                  + "".join(f", {name.replace('_', '-')} {m[name]}" for name in ("weight_drop", "embed_dropout", "locked_dropout")
                            if m.get(name))),
        ("parameters", f"{facts['parameters']:,}"),
        ("vocabulary", f"{vocab.kind}, {len(vocab)} tokens"
                       + (f", version {vocab.version} ({'note durations' if vocab.version >= 3 else 'note-offs'})"
                          if vocab.kind == "midi" else "")),
        ("trained", f"{facts['step']:,} steps, {facts['epoch']:.2f} epochs, {facts['tokens_seen']:,} tokens, "
                    f"{display.format_duration(facts['training_seconds'])}"),
        ("best val", f"{display.format_bits(facts['best_val_bits'])} bits/{unit}"
                     + (f" at step {facts['best_step']:,}" if facts["best_step"] is not None else "")),
        ("precision", f"{facts['precision']['name']} ({escape(facts['precision']['reason'])})"),
        ("corpus", ", ".join(facts["corpus"].get("files", [])[:3]) or "–"),
    ]
    train_cfg = facts["train"]
    if train_cfg:
        rows.append(("training", f"batch {train_cfg.get('batch_size')} x {train_cfg.get('seq_len')}, "
                                 f"lr {train_cfg.get('lr')}, clip {train_cfg.get('clip')}, seed {train_cfg.get('seed')}"))
    if vocab.kind == "text":
        rows.append(("characters", escape(repr("".join(vocab.tokens))[1:-1][:200])))
    else:
        from chargen.music import vocabulary as miditokens

        for group, example, count in miditokens.describe_tokens(vocab.version):
            rows.append((f"  {group}", f"{count:>4}  {escape(example)}"))
    out.print(display.key_value_table(escape(str(checkpoint_path)), rows))
    history = facts["history"]
    if history:
        series = {
            "train": [(h[0], h[1]) for h in history],
            "validation": [(h[0], h[2]) for h in history if h[2] is not None],
        }
        out.print()
        out.print(display.loss_chart(series, {"train": "yellow", "validation": "cyan"}, f"bits per {unit}"))


# -- music: inspect and show ------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "format", type=click.Choice(["text", "midi"]), help="Force the corpus kind (default: detected).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--roundtrip", "roundtrip_out", type=click.Path(dir_okay=False),
              help="With one MIDI file: write what chargen hears (MIDI -> tokens -> MIDI) to this file.")
def inspect(paths, format, as_json, roundtrip_out):
    """Check a corpus before training: per file its kind, token count, distinct
    tokens and, for MIDI, notes and notes preserved by a round trip; unreadable
    files with the reason.

    \b
    Example:
      chargen inspect data/bach/
      chargen inspect song.mid --roundtrip heard.mid
    """
    import json

    from chargen.music import midifile as midi
    from chargen.data.inspection import inspect_files

    report = inspect_files(paths, format)
    if roundtrip_out:
        readable = [r for r in report["files"] if r["kind"] == "midi" and r["error"] is None]
        if len(report["files"]) != 1 or len(readable) != 1:
            raise click.UsageError("--roundtrip takes exactly one readable MIDI file")
        midi.write_midi(midi.decode_tokens(midi.encode_file(readable[0]["path"])), roundtrip_out)
        err.print(f"wrote {escape(roundtrip_out)}")
    if as_json:
        keys = ("path", "kind", "tokens", "notes", "notes_preserved", "error")
        files = [{k: r[k] for k in keys} for r in report["files"]]
        click.echo(json.dumps({"files": files, "vocab_size": report["vocab_size"]}, indent=2))
    else:
        Console(highlight=False).print(display.inspect_table(report))
    if all(r["error"] for r in report["files"]):
        sys.exit(1)


@cli.command()
@click.argument("generated", nargs=-1, required=True)
@click.option("--corpus", "corpus", multiple=True, required=True,
              help="The corpus to compare with: files or folders (repeat for several).")
@click.option("--json", "as_json", is_flag=True, help="Also print the report as one JSON object on stdout.")
def compare(generated, corpus, as_json):
    """Compare GENERATED files (MIDI samples, or text) with a corpus, in numbers.

    For MIDI, per feature (pitch class, pitch range, notes per second,
    polyphony, note duration, inter-onset interval, scale consistency,
    empty-beat rate) the corpus and generated mean and spread and the overlap
    of their distributions (1 = the same, 0 = nothing in common; Yang & Lerch
    2018); the share of notes longer than the corpus's 99.9th percentile; and
    the longest run of notes copied from the corpus. For text: bigram and
    word-length overlap, the share of words found in the corpus, and the
    longest substring copied from it. The table goes to stderr.

    \b
    Example:
      chargen compare checkpoints/bach-20261121-120000/samples --corpus data/bach
      chargen compare story.txt --corpus data/tinyshakespeare.txt --json
    """
    import json

    from chargen.data.compare import compare_files

    with _named_options({"generated": "GENERATED", "corpus": "--corpus"}):
        report = compare_files(generated, corpus)
    for skipped in report.get("skipped", []):
        err.print(f"[yellow]note:[/] skipped {escape(skipped['reason'])}")
    err.print(display.compare_table(report))
    if as_json:
        click.echo(json.dumps(report, indent=2))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--width", type=whole(20, 10_000), help="Columns of the roll (default: the terminal's width).")
def show(file, width):
    """Draw a MIDI file as a piano roll: pitch against time, one colour per instrument.

    \b
    Example:
      chargen show song.mid
    """
    from chargen.music import midifile as midi

    song = midi.read_midi(file)
    notes = midi.piano_roll(song)
    out = Console(highlight=False)
    out.print(f"{escape(file)}: {len(notes)} notes, {song.length:.1f} s, {len(song.tracks)} tracks")
    out.print(display.piano_roll(notes, width=width or _roll_width(out)))


def _roll_width(console: Console) -> int:
    return max(20, min(display.ROLL_WIDTH, console.width - 8))


# -- serve ------------------------------------------------------------------------------


@cli.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (the default is reachable from this machine only).")
@click.option("--port", type=whole(0, 65535), default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--max-length", type=whole(1), default=2000, show_default=True, help="Most tokens one sample may ask for.")
@click.option("--max-samples", type=whole(1), default=10, show_default=True, help="Most samples (n) one request may ask for.")
@click.option("--max-request-bytes", type=whole(1), default=256 * 1024, show_default=True, help="Largest request body accepted.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True, help="Where the models run.")
def serve(runs, host, port, max_length, max_samples, max_request_bytes, device):
    """Serve RUNS (run directories or checkpoints) over HTTP, with the web studio at /.

    Each model is loaded once. The API: GET /api/models, POST /api/generate
    (JSON, or Server-Sent Events with "stream": true) and GET /generate, the
    query robinsloan/torch-rnn-server answered, for rnn-writer. Ctrl-C stops it.

    \b
    Example:
      chargen serve checkpoints/tinyshakespeare-20261121-120000
      chargen serve checkpoints/shakespeare checkpoints/bach --port 8080
    """
    try:
        import uvicorn  # noqa: F401 - only checked here; chargen.server runs it

        from chargen.serve import app as server
        from chargen.serve import models as serving
        from chargen.serve.requests import Limits
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("starlette", "uvicorn"):
            raise ChargenError("chargen serve needs the serve extra: pip install 'chargen[serve]'") from e
        raise
    limits = Limits(max_length=max_length, max_samples=max_samples, max_request_bytes=max_request_bytes)
    models = serving.load_models(list(runs), limits, device=device)
    app = server.create_app(models, limits)
    sock = server.listen(host, port)
    if not server.is_loopback(host):
        err.print(f"[yellow]warning:[/] listening on {escape(host)}: other machines can reach this server; "
                  "use --host 127.0.0.1 to keep it local")
    where = sock.getsockname()
    shown_host = f"[{where[0]}]" if ":" in where[0] else where[0]
    for s in models:
        err.print(f"model {escape(s.name)}: {s.model.kind}, {s.facts['parameters']:,} parameters")
    err.print(f"serving at http://{shown_host}:{where[1]}/ (Ctrl-C stops)")
    try:
        server.serve(app, sock)
    except KeyboardInterrupt:
        pass
    err.print("Stopped.")


if __name__ == "__main__":  # pragma: no cover
    main()
