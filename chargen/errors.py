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


class ArgumentError(ChargenError, ValueError):
    """An argument's value is out of range or does not fit the model (a prime the vocabulary
    lacks, a music option for a text model).

    `parameter` names the Python argument ("temperature"), so the CLI can name its own
    option ("--temp") instead; the message reads "<parameter> <reason>". It is also a
    ValueError, as Python callers expect of a bad value.
    """

    def __init__(self, parameter: str, reason: str):
        super().__init__(f"{parameter} {reason}")
        self.parameter, self.reason = parameter, reason
