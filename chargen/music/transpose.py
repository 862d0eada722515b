"""Musically neutral rewrites of token ids, as lookup tables: transposing pitches, stretching tempo.

A piece moved up a few semitones, or played a little faster, is still the same kind of
music; training on such copies teaches a model music rather than the keys and tempi its
corpus happens to use (Performance RNN, Music Transformer and MidiTok augment this way).
In token form both rewrites change single tokens and never the length of a list:

    note:60 -> note:62         transposed by +2 (note:, on: and off: carry a pitch; drum: never moves)
    tempo:100 -> tempo:104     stretched by 1.05 (the nearest tempo bin)

so a whole corpus is rewritten with one table lookup per token:

    table = transpose_table(vocab.tokens, range(-5, 6))     # (11, V): row s + 5 maps every id
    moved = table[7][ids]                                     # ids transposed by +2

chargen.data.augment draws which rewrite each piece gets in each epoch of training.
"""

from __future__ import annotations

from typing import Sequence

import torch

from chargen.music.grid import bpm2bin

PITCHED = ("note", "on", "off")  # token kinds whose value is a pitch; drum: keys name instruments, not pitches
LOWEST_PITCH, HIGHEST_PITCH = 0, 127


def pitches(tokens: Sequence[str]) -> torch.Tensor:
    """The pitch (0-127) of each token of a vocabulary, in id order; -1 where a token has none."""
    out = torch.full((len(tokens),), -1, dtype=torch.long)
    for i, token in enumerate(tokens):
        kind, _, value = token.partition(":")
        if kind in PITCHED:
            out[i] = int(value)
    return out


def transpose_table(tokens: Sequence[str], semitones: Sequence[int]) -> torch.Tensor:
    """(len(semitones), V) ids: row r maps each token id to its id transposed by semitones[r].

    Tokens without a pitch map to themselves, as does a pitch moved outside 0-127
    (a caller keeps pieces inside the range: see chargen.data.augment).
    """
    index = {token: i for i, token in enumerate(tokens)}
    table = torch.arange(len(tokens)).repeat(len(semitones), 1)
    for i, token in enumerate(tokens):
        kind, _, value = token.partition(":")
        if kind not in PITCHED:
            continue
        for row, shift in enumerate(semitones):
            moved = int(value) + shift
            if LOWEST_PITCH <= moved <= HIGHEST_PITCH:
                table[row, i] = index.get(f"{kind}:{moved}", i)
    return table


def tempo_table(tokens: Sequence[str], factors: Sequence[float]) -> torch.Tensor:
    """(len(factors), V) ids: row r maps each tempo:B token to the bin nearest B * factors[r];
    every other token maps to itself. Time stays in beats, so only the tempo tokens change."""
    index = {token: i for i, token in enumerate(tokens)}
    table = torch.arange(len(tokens)).repeat(len(factors), 1)
    for i, token in enumerate(tokens):
        kind, _, value = token.partition(":")
        if kind != "tempo":
            continue
        for row, factor in enumerate(factors):
            table[row, i] = index.get(f"tempo:{bpm2bin(int(value) * factor)}", i)
    return table
