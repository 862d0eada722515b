"""Data augmentation for music: each epoch, every training piece in a new key (and tempo).

A small MIDI corpus is learned by heart within minutes (Bach: 195k training tokens).
Shown each piece transposed by a random number of semitones, a new draw every epoch,
the model sees the same music in many keys and learns what stays when the key changes
(Performance RNN, Music Transformer, MidiTok). The rewrite is a table lookup per token
(chargen.music.transpose), so the token count and the TBPTT layout stay as they are.
It is an option, off by default: on runs of 10 minutes it measured worse (MUSIC_DEFAULT).

    augment = Augmenter(corpus.vocab, corpus.train, "transpose", seed=1111)
    draws = augment.draw(epoch)                    # {"epoch", "transpose", "tempo"}: one entry per piece
    ids = augment.apply(draws)                     # this epoch's training ids

The draws of an epoch depend only on the seed and the epoch, and the training loop keeps
the current epoch's draws in its TrainState, so a resumed run (and every rank of a
distributed one) trains on exactly the ids an uninterrupted single process would. The
corpus cache and the validation ids are never augmented.
"""

from __future__ import annotations

from typing import Optional

import torch

from chargen.errors import CorpusError
from chargen.music.grid import PIECE_TOKEN
from chargen.music.transpose import HIGHEST_PITCH, LOWEST_PITCH, pitches, tempo_table, transpose_table
from chargen.vocab import Vocab

AUGMENTS = ("auto", "none", "transpose", "tempo", "transpose+tempo")  # auto: MUSIC_DEFAULT for MIDI, none for text
# Chosen by measurement (docs/midi.md#augmentation-each-piece-in-other-keys): on Bach at the steps
# of a 10-minute run, transposing cost 0.17 bits/token of validation and the samples' key, and
# stretching tempo changed nothing beyond the spread between seeds.
MUSIC_DEFAULT = "none"
# Transposition by up to this many semitones either way (11 keys), unless a run says otherwise
# (--transpose); measured in docs/midi.md.
TRANSPOSE_SEMITONES = 5
MAX_TRANSPOSE = 12  # an octave either way: beyond it, pieces would leave the range they were written for
# Tempo stretches, Music Transformer's set (Huang et al. 2018): within 5%, a bin or two of tempo.
TEMPO_FACTORS = (0.95, 0.975, 1.0, 1.025, 1.05)
_SALT = 0x5EED_A06  # keeps the augmentation draws apart from the seed's other uses


def resolve(augment: str, kind: str) -> str:
    """The augmentation a run uses: "auto" becomes MUSIC_DEFAULT for MIDI and "none" for text;
    an augmentation asked for on a text corpus is refused (only music has keys)."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    if augment == "auto":
        return MUSIC_DEFAULT if kind == "midi" else "none"
    if augment != "none" and kind != "midi":
        raise CorpusError(f"--augment {augment} applies to MIDI corpora only; this corpus is text "
                          "(use --augment none, or leave it out)")
    return augment


class Augmenter:
    """The per-epoch rewrite of one corpus's training ids (see the module docstring)."""

    def __init__(self, vocab: Vocab, ids: torch.Tensor, augment: str, seed: int, semitones: int = TRANSPOSE_SEMITONES):
        assert augment in ("transpose", "tempo", "transpose+tempo"), f"no augmenter for {augment!r}"
        semitones = 0 if augment == "tempo" else semitones
        assert 0 <= semitones <= MAX_TRANSPOSE, f"semitones must be in 0..{MAX_TRANSPOSE}, got {semitones}"
        self.ids, self.seed, self.range = ids, seed, semitones
        self.semitones = list(range(-semitones, semitones + 1))
        self.factors = TEMPO_FACTORS if augment in ("tempo", "transpose+tempo") else (1.0,)
        self.transpose = transpose_table(vocab.tokens, self.semitones)  # (S, V)
        self.tempo = tempo_table(vocab.tokens, self.factors)  # (F, V)
        # Pieces: each <piece> token starts one (tokens before the first belong to it).
        starts = (ids == vocab.tokens.index(PIECE_TOKEN)).nonzero().flatten()
        if len(starts) == 0 or starts[0] != 0:
            starts = torch.cat([torch.zeros(1, dtype=starts.dtype), starts])
        self.lengths = torch.diff(torch.cat([starts, torch.tensor([len(ids)])]))
        # The lowest and highest pitch of each piece bound how far it may move.
        pitch = pitches(vocab.tokens)[ids.long()]
        piece = torch.repeat_interleave(torch.arange(len(starts)), self.lengths)
        pitched = pitch >= 0
        low = torch.full((len(starts),), HIGHEST_PITCH).scatter_reduce(0, piece[pitched], pitch[pitched], "amin")
        high = torch.full((len(starts),), LOWEST_PITCH).scatter_reduce(0, piece[pitched], pitch[pitched], "amax")
        self.down = torch.clamp(low - LOWEST_PITCH, max=semitones)  # semitones each piece may go down
        self.up = torch.clamp(HIGHEST_PITCH - high, max=semitones)

    @property
    def pieces(self) -> int:
        return len(self.lengths)

    def draw(self, epoch: int) -> dict:
        """The rewrite of every piece in `epoch`: a transposition kept inside the pitch range,
        uniform over the semitones allowed, and a tempo factor; the same for the same seed and epoch."""
        generator = torch.Generator().manual_seed(((self.seed ^ _SALT) + epoch * 1_000_003) % 2**63)
        u = torch.rand(self.pieces, generator=generator, dtype=torch.float64)
        shift = (-self.down + (u * (self.down + self.up + 1)).floor().long()).clamp(max=self.up)
        tempo = torch.randint(len(self.factors), (self.pieces,), generator=generator)
        return {"epoch": epoch, "transpose": shift.to(torch.int8), "tempo": tempo.to(torch.int8)}

    def apply(self, draws: dict) -> torch.Tensor:
        """The training ids with each piece rewritten as `draws` says (the same dtype as the corpus's)."""
        if len(draws["transpose"]) != self.pieces:
            raise CorpusError(f"the saved augmentation draws cover {len(draws['transpose'])} pieces, "
                              f"the corpus has {self.pieces}")
        row = torch.repeat_interleave(draws["transpose"].long() + self.range, self.lengths)
        ids = self.transpose[row, self.ids.long()]
        if len(self.factors) > 1:
            ids = self.tempo[torch.repeat_interleave(draws["tempo"].long(), self.lengths), ids]
        return ids.to(self.ids.dtype)


def make_augmenter(vocab: Vocab, ids: torch.Tensor, augment: str, seed: int,
                   semitones: int = TRANSPOSE_SEMITONES) -> Optional[Augmenter]:
    """The run's Augmenter, or None for augment "none" (text, or music left as it is)."""
    return None if augment == "none" else Augmenter(vocab, ids, augment, seed, semitones)
