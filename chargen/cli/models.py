"""`chargen eval` and `chargen info`: what a trained model scores, and what it is."""

from __future__ import annotations

import click
from rich.console import Console
from rich.markup import escape

from chargen.arguments import BATCH_SIZE, SCORE_BATCH_SIZE
from chargen.cli import display
from chargen.cli.display import err
from chargen.cli.options import SAMPLE_OPTIONS, named_options, ranged


@click.command("eval")
@click.argument("checkpoint_path", metavar="CHECKPOINT")
@click.argument("file", type=click.Path(exists=True))
@click.option("--batch-size", type=ranged(BATCH_SIZE), default=SCORE_BATCH_SIZE, show_default=True, help="Parallel streams.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True, help="Products in bf16 or fp32; auto: bf16 where the hardware has it.")
def eval_command(checkpoint_path, file, batch_size, precision):
    """Print the bits per character (per token, and per note, for music) of FILE under a model,
    then the cold-start figure: the same over up to 128 passages of FILE (after its blank
    lines), each read from the model's start state, as a sample begins.

    \b
    Example:
      chargen eval checkpoints/tinyshakespeare-20261121-120000 held_out.txt
    """
    from chargen import api

    with named_options(SAMPLE_OPTIONS | {"file": "FILE"}):
        model = api.load(checkpoint_path, precision=precision)
        score = model.score_file(file, batch_size=batch_size)
    for path, reason in score.skipped:
        err.print(f"[yellow]note:[/] skipped {escape(str(path))}: {escape(reason)}", soft_wrap=True)
    unit = "character" if model.kind == "text" else "token"
    err.print(f"{score.tokens:,} tokens, precision {model.precision.name} ({escape(model.precision.reason)})")
    click.echo(f"{score.bits:.4f} bits per {unit}")
    if score.bits_per_note is not None:  # music: comparable across vocabularies
        click.echo(f"{score.bits_per_note:.4f} bits per note")
    click.echo(f"cold start: {score.cold_bits:.4f} bits per {unit} ({score.passages} passages from the start state)")


@click.command()
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
                                 f"lr {train_cfg.get('lr')}, clip {train_cfg.get('clip')}, seed {train_cfg.get('seed')}"
                                 + (f", augment {train_cfg.get('augment', 'none')}" if vocab.kind == "midi" else "")))
    if vocab.kind == "text":
        rows.append(("characters", escape(repr("".join(vocab.tokens))[1:-1][:200])))
    else:
        from chargen.music import vocabulary

        for group, example, count in vocabulary.describe_tokens(vocab.version):
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
