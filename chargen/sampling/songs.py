"""A music model's samples as MIDI files: options checked, the prime read, events drawn, files decoded.

    songs = generate_songs(network, vocab, FP32, torch.device("cpu"), prime="song.mid", seconds=30, n=2, seed=1)

Model.generate() of a music model is this (chargen/api.py keeps the text side). Every
option is checked before any work; the file returned holds the prime and the new music
(only the new music with include_prime=False), at the model's vocabulary version.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from chargen.arguments import (
    DEFAULT_PRIME_SECONDS,
    MAX_MUSIC_TOKENS,
    PRIME_SECONDS,
    PROGRAM,
    SECONDS,
    TEMPO,
)
from chargen.device import random_generator
from chargen.errors import ArgumentError
from chargen.model import CharRNN
from chargen.music import grid, midifile, vocabulary
from chargen.precision import Precision
from chargen.sampling.draw import DEFAULT_LENGTH, sample_config
from chargen.sampling.generate import generate_music
from chargen.vocab import Vocab


def generate_songs(network: CharRNN, vocab: Vocab, precision: Precision, device: torch.device, prime=None,
                   length: Optional[int] = None, temperature: float = 1.0, top_k: Optional[int] = None,
                   top_p: Optional[float] = None, seed: Optional[int] = None, n: int = 1,
                   seconds: Optional[float] = None, prime_seconds: float = DEFAULT_PRIME_SECONDS,
                   tempo: Optional[float] = None, program: Optional[int] = None,
                   include_prime: bool = True) -> list:
    """n mido.MidiFile samples; see Model.generate() for the arguments."""
    vocabulary.check_version(vocab.version)  # a model of an older vocabulary samples in its own
    for value, allowed in ((seconds, SECONDS), (tempo, TEMPO), (program, PROGRAM)):
        if value is not None:
            allowed.check(value)
    PRIME_SECONDS.check(prime_seconds)
    if not isinstance(include_prime, bool):
        raise ArgumentError("include_prime", f"must be True or False, got {include_prime!r}")
    if length is None:
        length = MAX_MUSIC_TOKENS if seconds is not None else DEFAULT_LENGTH
    config = sample_config(temperature, top_k, top_p, length, n, precision.name)
    if prime is None or prime == "":
        prime_tokens = [grid.PIECE_TOKEN]
    elif isinstance(prime, (bytes, bytearray)):  # a file's contents, read in memory (a server's upload)
        prime_tokens = midifile.read_prime(bytes(prime), prime_seconds, vocab.version, name="prime")
    elif isinstance(prime, (str, os.PathLike)) and os.path.isfile(prime):
        prime_tokens = midifile.read_prime(prime, prime_seconds, vocab.version)
    else:
        raise ArgumentError("prime", "of a music model must be a MIDI file to continue (a path, or its bytes)")
    generator = random_generator(device, seed)
    samples = generate_music(network, vocab, prime_tokens, config, generator, seconds=seconds, tempo=tempo)
    skip = 0 if include_prime else len(prime_tokens)  # the prime sets the state; its notes stay out
    # With seconds, notes still sounding where the new music ends stop RELEASE_SECONDS later.
    return [midifile.decode_tokens(tokens, tempo_bpm=tempo, program=program, version=vocab.version,
                                   prime_length=skip, seconds=seconds, new_from=len(prime_tokens))
            for tokens in samples]
