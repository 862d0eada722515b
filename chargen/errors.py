"""The errors chargen raises for expected failures.

Every problem a user can cause (a bad corpus, a foreign checkpoint, an option out
of range) is a ChargenError. The CLI turns these into one line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class ChargenError(Exception):
    """Base class for every expected, user-facing failure."""


class CorpusError(ChargenError):
    """A corpus file or folder cannot be read or tokenized."""


class MidiError(CorpusError):
    """A MIDI file is malformed, or a token sequence cannot become one."""


class CheckpointError(ChargenError):
    """A checkpoint is missing, truncated, foreign or incompatible."""


class TrainingError(ChargenError):
    """Training cannot go on: the loss diverged, or the run directory is unusable."""
