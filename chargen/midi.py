"""MIDI file <-> event tokens (placeholder until the tokenizer lands)."""

MIDI_EXTENSIONS = (".mid", ".midi", ".kar")


def is_midi_file(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"MThd"
