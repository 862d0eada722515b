"""`chargen suggest`: the most probable ways a model would finish the next word, phrase or line."""

from __future__ import annotations

import json
import sys

import click

from chargen.arguments import SAMPLES
from chargen.cli.options import SAMPLE_OPTIONS, named_options, ranged
from chargen.errors import ChargenError
from chargen.sampling.suggest import BATCH, MAX_CHARS, UNITS


@click.command()
@click.argument("arguments", nargs=-1, metavar="[CHECKPOINT] TEXT")
@click.option("-n", "--num-suggestions", "n", type=ranged(SAMPLES), default=3, show_default=True, help="How many completions to print.")
@click.option("--unit", type=click.Choice(UNITS), default="word", show_default=True, help="Complete the next word, phrase or line.")
@click.option("--json", "as_json", is_flag=True, help="Print the text, unit and suggestions as one JSON object.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True, help="Products in bf16 or fp32; auto: bf16 where the hardware has it.")
def suggest(arguments, n, unit, as_json, device, precision):
    """Print the most probable completions of TEXT to the end of a word, a phrase
    or a line, each with the model's probability for it, most probable first.
    CHECKPOINT is a checkpoint file or a run directory; omitted, the latest run
    under ./checkpoints. TEXT - reads the text from stdin.

    The completions are found by a search, not by sampling: the same text always
    gets the same suggestions. A word's probability includes the character that
    ends it; a phrase ends at , ; : . ! ? (included) or a newline, a line at a
    newline (neither included). Each completion is printed as a JSON string, so
    spaces and newlines show.

    \b
    Example:
      chargen suggest checkpoints/tinyshakespeare-20261121-120000 "To be, or not to"
      chargen suggest "ROMEO:" --unit line -n 5
      chargen suggest - --json < draft.txt
    """
    import torch

    from chargen import api

    if not arguments:
        raise click.UsageError("give the TEXT to complete: chargen suggest [CHECKPOINT] TEXT")
    if len(arguments) > 2:
        raise click.UsageError(f"takes at most two arguments, [CHECKPOINT] TEXT; got {len(arguments)}")
    checkpoint_path, text = (None, arguments[0]) if len(arguments) == 1 else arguments
    if text == "-":
        text = sys.stdin.read()
    with named_options(SAMPLE_OPTIONS | {"text": "TEXT", "n": "-n"}):
        model = api.load(checkpoint_path, device=device, precision=precision)
        if model.kind != "text":
            raise ChargenError(f"{model.file} is a music model; chargen suggest completes text")
        # The count chargen sample would pick for a search's batch (sampling/threads.py): set once.
        torch.set_num_threads(model.sampling_threads(len(text) + MAX_CHARS[unit], BATCH))
        found = model.suggest(text, n=n, unit=unit)
    if as_json:
        suggestions = [{"text": s.text, "probability": s.probability} for s in found]
        click.echo(json.dumps({"text": text, "unit": unit, "suggestions": suggestions}, ensure_ascii=False))
        return
    for s in found:
        click.echo(f"{100 * s.probability:6.2f}%  {json.dumps(s.text, ensure_ascii=False)}")
