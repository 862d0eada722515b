"""`chargen sample`: text to stdout as it is generated, music to .mid files with manifests."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import click
from rich.markup import escape

from chargen.arguments import (
    BEAM,
    DEFAULT_PRIME_SECONDS,
    LENGTH,
    MAX_MUSIC_TOKENS,
    PRIME_SECONDS,
    PROGRAM,
    SAMPLES,
    SECONDS,
    SEED,
    TEMPERATURE,
    TEMPO,
    TOP_K,
    TOP_P,
)
from chargen.cli import display
from chargen.cli.display import err
from chargen.cli.options import (
    SAMPLE_OPTIONS,
    default_of,
    given_on_command_line,
    named_options,
    ranged,
    unescape,
)
from chargen.errors import ArgumentError, ChargenError
from chargen.sampling.draw import SampleConfig


@click.command()
@click.argument("checkpoint_path", metavar="[CHECKPOINT]", required=False)
@click.option("--temp", "temperature", type=ranged(TEMPERATURE), default=default_of(SampleConfig, "temperature"), show_default=True, help="Sampling temperature; 0 is greedy.")
@click.option("--top-k", type=ranged(TOP_K), help="Sample only from the k most likely tokens.")
@click.option("--top-p", type=ranged(TOP_P), help="Sample from the smallest set of tokens with probability >= p.")
@click.option("--prime", help="Text to continue; for a music model, a MIDI file to continue.")
@click.option("--length", type=ranged(LENGTH), default=default_of(SampleConfig, "length"), show_default=True, help="Tokens to generate.")
@click.option("--num-samples", type=ranged(SAMPLES), default=default_of(SampleConfig, "num_samples"), show_default=True, help="Samples, generated in parallel.")
@click.option("--seed", type=ranged(SEED), help="Random seed (default: fresh randomness each time).")
@click.option("--stop", help="End a text sample when it generates this text (not included).")
@click.option("--beam", type=ranged(BEAM), help="Text: no sampling, but a beam search this wide for the most probable continuation (the --num-samples best).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout (FILE-1, FILE-2… for several samples).")
@click.option("--seconds", type=ranged(SECONDS), help="Music: generate this much new music (see above for --length).")
@click.option("--prime-seconds", type=ranged(PRIME_SECONDS), default=DEFAULT_PRIME_SECONDS, show_default=True, help="Music: how much of the --prime piece to continue.")
@click.option("--tempo", type=ranged(TEMPO), help="Music: write the file at this tempo (BPM).")
@click.option("--program", type=ranged(PROGRAM), help="Music: play every pitched part with this General MIDI program.")
@click.option("--omit-prime", is_flag=True, help="Music: write only the new music, not the --prime piece it continues.")
@click.option("--from-manifest", type=click.Path(dir_okay=False), help="Music: generate again, exactly, the sample a manifest (FILE.mid.json) describes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True, help="Products in bf16 or fp32; auto: bf16 where the hardware has it. A seed repeats its text only in the same precision.")
def sample(checkpoint_path, prime, seed, stop, beam, out, seconds, prime_seconds, tempo, program, omit_prime,
           from_manifest, device, precision, temperature, top_k, top_p, length, num_samples):
    """Generate from a trained model. CHECKPOINT is a checkpoint file or a run
    directory (its best checkpoint); omitted, the latest run under ./checkpoints.

    A text model prints to stdout; a music model writes .mid files (--out, or
    its run directory) and draws a piano roll. With --seconds, a music sample
    ends at that much new music or, if --length is given too, at --length
    tokens, whichever comes first. Beside each music file, FILE.mid.json
    records the checkpoint, seed and options: --from-manifest FILE.mid.json
    generates that file again, exactly.
    --stop understands \\n, \\t, \\\\ and \\xNN escapes. --beam N searches instead of
    sampling: deterministic, so --temp, --top-k, --top-p and --seed do not apply.

    \b
    Example:
      chargen sample --temp 0.8 --length 500
      chargen sample checkpoints/tinyshakespeare-20261121-120000 --prime "ROMEO:" --top-p 0.9
      chargen sample --num-samples 4 --stop "\\n\\n" --seed 7
      chargen sample --prime "ROMEO:" --beam 8 --length 200 --stop "\\n\\n"
      chargen sample checkpoints/bach-20261121-120000 --seconds 30 --out song.mid
      chargen sample --from-manifest checkpoints/bach-20261121-120000/samples/sample-20261121-130000.mid.json
    """
    from chargen import api

    given = given_on_command_line(click.get_current_context())
    if from_manifest:
        _sample_again(checkpoint_path, from_manifest, out, given)
        return
    options = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, n=num_samples)
    with named_options(SAMPLE_OPTIONS):
        model = api.load(checkpoint_path, device=device, precision=precision)
        tokens = length if "length" in given or model.kind == "text" or seconds is None else MAX_MUSIC_TOKENS
        _set_threads(model, tokens, num_samples if beam is None else beam + (beam > 1))  # a beam: its streams
        if model.kind == "midi":
            for name, value in (("stop", stop), ("beam", beam)):
                if value is not None:
                    raise ArgumentError(name, "is for text models; this is a music model")
            music = dict(prime=prime, prime_seconds=prime_seconds, seconds=seconds, tempo=tempo, program=program,
                         length=length if "length" in given else None, include_prime=not omit_prime)
            _sample_music(model, options | music, out)
        else:
            for name, value in (("seconds", seconds), ("tempo", tempo), ("program", program),
                                ("omit_prime", omit_prime or None)):
                if value is not None:
                    raise ArgumentError(name, "is for music models; this is a text model")
            if beam is not None:  # a search: none of the sampling options apply
                for name in ("temperature", "top_k", "top_p", "seed"):
                    if name in given:
                        raise ArgumentError(name, "does not apply to beam search, which is deterministic")
                options = dict(n=num_samples, beam=beam)
            _sample_text(model, options, prime, length, unescape(stop), out)


def _set_threads(model, tokens: int, n: int) -> None:
    """Set this process's torch thread count, once, to what a timing picks for this model and
    workload (chargen/sampling/threads.py); generation never changes it."""
    import torch

    torch.set_num_threads(model.sampling_threads(tokens, n))


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
    from chargen.api import join_pieces
    from chargen.cli import output

    prime = (prime or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # undecodable argv bytes
    if _is_midi_path(prime):
        raise click.UsageError(f"--prime {prime} is a MIDI file, but this is a text model; prime it with text")
    paths = output.sample_paths(out, options["n"], "text", model.file)  # checked before any work
    if options.get("beam"):  # known only once the search ends: printed whole
        pieces = [model.generate(prime, length=length, stop=stop, **options)]  # one step: the text, or n texts
    else:
        pieces = model.stream(prime, length=length, stop=stop, **options)
    if paths is None and options["n"] == 1:  # one sample to the terminal: show it as it comes
        _stream_to_stdout(prime, pieces)
        return
    steps = ([piece] for piece in pieces) if options["n"] == 1 else pieces
    texts = [prime + text for text in join_pieces(steps, options["n"])]
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
    # no mido: a text model never needs it
    from chargen.music.vocabulary import looks_like_midi

    return looks_like_midi(text)


def _sample_music(model, options: dict, out, index: Optional[int] = None) -> None:
    """Generate music with Model.generate(**options) and write each file with its manifest.

    `index` (1-based) writes only that sample of the batch (a regeneration).
    """
    from chargen.cli import manifest, output
    from chargen.data.cache import file_fingerprint
    from chargen.music import midifile

    paths = output.sample_paths(out, 1 if index else options["n"], "midi", model.file)  # checked before any work
    if options["seed"] is None:  # a fresh seed, drawn here so that the manifest can record it
        options["seed"] = int.from_bytes(os.urandom(6), "little")
    songs = model.generate(**options)
    songs = songs if options["n"] > 1 else [songs]
    numbers = [index] if index else range(1, options["n"] + 1)
    digest = file_fingerprint(model.file) if model.file is not None else None
    for path, number in zip(paths, numbers):
        song = songs[number - 1]
        midifile.write_midi(song, path)
        if digest is not None:
            manifest.write(path, manifest.build(model.file, digest, options, number,
                                                model.device.type, model.precision.name))
        notes = midifile.piano_roll(song)
        err.print(f"wrote {escape(str(path))}: {len(notes)} notes, {song.length:.1f} s")
        if path == paths[0]:
            err.print(display.piano_roll(notes, width=display.roll_width(err)))


def _sample_again(checkpoint_path, manifest_file, out, given: set) -> None:
    """`sample --from-manifest`: the sample a manifest describes, generated again from its own settings."""
    from chargen import api
    from chargen.cli import manifest

    others = sorted(SAMPLE_OPTIONS.get(name, name) for name in given - {"from_manifest", "out", "checkpoint_path"})
    if others:
        raise click.UsageError(f"--from-manifest takes its settings from the manifest; drop {', '.join(others)}")
    record = manifest.read(manifest_file)
    _check_like_the_command_line(record["options"], manifest_file)
    model = api.load(checkpoint_path or record["checkpoint"], device=record["device"], precision=record["precision"])
    if model.kind != "midi":
        raise ChargenError(f"{manifest_file}: the manifest is for a music model; {model.file} is a text model")
    manifest.check_sources(record, model.file, manifest_file)
    if out is None:
        name = Path(manifest_file).name.removesuffix(manifest.SUFFIX)
        out = Path(manifest_file).with_name(f"{Path(name).stem}-again{Path(name).suffix or '.mid'}")
    options = dict(record["options"])
    _set_threads(model, options["length"] or MAX_MUSIC_TOKENS, options["n"])
    with named_options(SAMPLE_OPTIONS):
        _sample_music(model, options, out, index=record["sample"])


# A manifest's option names where they differ from the command's parameters.
_MANIFEST_PARAMETERS = {"n": "num_samples", "include_prime": "omit_prime"}


def _check_like_the_command_line(options: dict, manifest_file) -> None:
    """ChargenError unless a manifest's options pass the checks their command-line options do:
    an edited manifest can ask for no more than the command line could ("n": 10**9 is refused
    as --num-samples 1000000000 is)."""
    params = {p.name: p for p in click.get_current_context().command.params}
    for name, value in options.items():
        param = params[_MANIFEST_PARAMETERS.get(name, name)]
        option = param.opts[0]
        if name == "include_prime":
            if not isinstance(value, bool):
                raise ChargenError(f"{manifest_file}: the manifest's include_prime must be true or false, "
                                   f"got {value!r}")
            continue
        if value is None:  # an option left out
            continue
        if name == "prime":
            wanted = str
        elif isinstance(param.type, click.IntRange):
            wanted = int
        else:
            wanted = (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise ChargenError(f"{manifest_file}: the manifest's {option} must be a "
                               f"{'path' if wanted is str else 'number'}, got {value!r}")
        try:
            param.type.convert(value, param, None)
        except click.BadParameter as e:
            raise ChargenError(f"{manifest_file}: the manifest's {option} {value!r} is refused, as on the "
                               f"command line: {e.format_message()}") from e
