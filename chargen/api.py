"""chargen from Python: load a trained model, generate, stream and score text.

    >>> import chargen
    >>> model = chargen.load("checkpoints/tinyshakespeare-20261121-120000")
    >>> model.generate("ROMEO:", length=200, temperature=0.8, seed=1)   # the new text only
    >>> for piece in model.stream("JULIET:", length=300):
    ...     print(piece, end="")
    >>> model.score("To be, or not to be")                               # bits per character

Continuing a text costs the same per character however long the text already is: an
RNN's whole past lives in its hidden state. `Model.prime_state` exposes that state,
so a caller (an editor, a server) can read a text once and later feed only what was
added to it:

    >>> state = model.prime_state("ROMEO: I dreamt")      # read once
    >>> state = model.prime_state(" a dream", state)      # only the new characters
    >>> model.generate(length=80, state=state, seed=3)    # continue from there

The CLI commands sample, eval and info are thin layers over this module, and
chargen.train() (chargen/training/api.py) over chargen/training/; see docs/python-api.md
for a walkthrough. A music model's generate() is chargen/sampling/songs.py, and info()'s
facts about a run come from chargen/training/facts.py.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch

from chargen.arguments import BATCH_SIZE, DEFAULT_PRIME_SECONDS, SAMPLES, SCORE_BATCH_SIZE
from chargen.data.textstream import normalize_line_endings
from chargen.device import random_generator, resolve_device, same_device
from chargen.errors import ArgumentError
from chargen.model import CharRNN, Hidden, ModelConfig
from chargen.precision import PRECISIONS, choose_precision
from chargen.sampling.beam import beam_config, beam_texts
from chargen.sampling.draw import DEFAULT_LENGTH, sample_config
from chargen.sampling.generate import generate_text, read
from chargen.sampling.suggest import Suggestion, suggest
from chargen.sampling.suggest import rules as suggestion_rules
from chargen.training import checkpoint
from chargen.training.checkpoint import PathLike
from chargen.vocab import Vocab


def load(path: Optional[PathLike] = None, device: str = "cpu", precision: str = "auto") -> "Model":
    """Load a trained model from a checkpoint file or a run directory (its best.pt).

    Without a path, the latest run under ./checkpoints. `device` is "cpu" (the
    default, as for `chargen sample`: one stream of a small model samples fastest
    there), "cuda" or "auto". Raises CheckpointError for a missing, truncated or
    foreign file. `precision` ("auto", "fp32" or "bf16", see chargen/precision.py) is
    the precision of the products when generating and scoring; any checkpoint runs
    in either, and a seed repeats its text on the same machine and precision.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ArgumentError("path", f"must be a checkpoint file or run directory (a str or path), "
                                    f"got {type(path).__name__}")
    if isinstance(path, os.PathLike) and not isinstance(os.fspath(path), str):
        raise ArgumentError("path", "must be a str path, not bytes")
    resolve_device(device)  # a bad device fails before the checkpoint is read
    loaded = checkpoint.load_model(path)
    return Model(loaded.model, loaded.vocab, device=device, file=loaded.file, payload=loaded.payload,
                 precision=precision)


@dataclass(frozen=True)
class State:
    """What a text model remembers after reading some text: enough to continue it.

    Made by Model.prime_state and accepted by generate/stream/prime_state as
    `state=`. Nothing ever writes into a State: every call that continues from one
    works on copies, so one State can serve any number of calls, also at once
    from several threads (a server's cache of recent primes relies on this).
    """

    hidden: Hidden  # the model's hidden state for one stream: (num_layers, 1, hidden_size), a pair for LSTM
    logits: torch.Tensor  # (1, vocab_size): the model's scores for the character that comes next
    length: int  # how many characters have been read into this state
    # Which model made it: its shape ("lstm 2x512, vocabulary 65") and an identity no other
    # Model object shares. A state means something only to the weights that wrote it; another
    # model of the same shape would read it as noise, so every other model refuses it.
    model: str = ""
    model_id: str = ""


@dataclass(frozen=True)
class FileScore:
    """What Model.score_file measured."""

    bits: float  # bits per token (per character, for text)
    tokens: int  # tokens scored
    skipped: list  # (path, reason) for each file of a folder that could not be read
    bits_per_note: Optional[float] = None  # music: the same bits over the notes scored (note:, on:, drum:)
    cold_bits: float = math.nan  # the same, over passages each read from the start state (training/validation.py)
    passages: int = 0  # how many passages cold_bits read


class Model:
    """A trained model with its vocabulary, ready to generate and score.

    Attributes: `kind` ("text" or "midi"), `vocab`, `config` (the ModelConfig),
    `device`, `file` (the checkpoint it came from, or None), `network` (the
    torch module) and `train_config` (the training settings, a dict).
    """

    def __init__(self, network: CharRNN, vocab: Vocab, device: str = "cpu",
                 file: Optional[Path] = None, payload: Optional[dict] = None, precision: str = "auto"):
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ArgumentError("precision", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = choose_precision(precision, self.device)  # bf16 asked for where it fails: ChargenError
        self.network = network.to(self.device).eval()
        self.vocab = vocab
        self.file = file
        self._identity = secrets.token_hex(8)  # what a State records as "made by this model"
        self._threads: dict[tuple, int] = {}  # sampling_threads(): chosen once per workload
        self._payload = {k: v for k, v in (payload or {}).items() if k not in ("model_state", "optimizer_state")}

    @property
    def kind(self) -> str:
        return self.vocab.kind

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @property
    def train_config(self) -> dict:
        return dict(self._payload.get("train_config", {}))

    def __repr__(self) -> str:
        c = self.config
        return (f"<chargen.Model {self.kind} {c.cell} {c.num_layers}x{c.hidden_size}, "
                f"vocab {len(self.vocab)}, {self.device}, {self.file}>")

    # -- text: reading, generating, streaming ------------------------------------------

    def prime_state(self, text: str, state: Optional[State] = None) -> State:
        """The state after reading `text`, continuing `state` when given.

        Feeding only new characters onto an earlier state equals reading the whole
        text at once: ``prime_state(b, prime_state(a))`` continues like
        ``prime_state(a + b)`` (exactly in fp32; to bf16 rounding under bf16, whose
        products round a state read in pieces a little differently). Without
        `state`, an empty text reads the default start (a newline, when the
        vocabulary has one), as generate() does.
        `state` is not modified.
        """
        self._require_text("prime_state")
        text = self._check_prime(text)  # text, never a file name: a server feeds its clients' text here
        if state is not None:
            self._check_state(state)
            if not text:
                return state
            hidden = state.hidden
        else:
            text = text or self._default_prime()
            hidden = self.network.init_hidden(1)
        ids = self.vocab.encode(text).to(self.device).unsqueeze(0)  # (1, T)
        logits, hidden = read(self.network, ids, hidden, self.precision)
        return State(hidden=hidden, logits=logits, length=(state.length if state else 0) + len(text),
                     model=self._shape(), model_id=self._identity)

    def generate(self, prime="", length: Optional[int] = None, temperature: float = 1.0,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, stop: Optional[str] = None,
                 seed: Optional[int] = None, n: int = 1, state: Optional[State] = None,
                 seconds: Optional[float] = None, prime_seconds: float = DEFAULT_PRIME_SECONDS,
                 tempo: Optional[float] = None, program: Optional[int] = None, include_prime: bool = True,
                 beam: Optional[int] = None):
        """Generate `n` samples; one is returned as is, several as a list.

        A text model returns the new text, without the prime: `length` characters
        (default 1000), or fewer where a sample generated `stop` (not included).
        With `state` (from prime_state), generation continues the text that state
        has read, after reading `prime` onto it.

        A music model returns mido.MidiFile objects. `prime` is then a MIDI file
        to continue, a path or the file's bytes (its first `prime_seconds`; the
        file returned holds the prime and the new music; with include_prime=False
        only the new music, from where the prime ends), `seconds` ends a sample
        once it holds that much new music (the last note starts within it; notes
        still sounding stop a quarter second later), `length` ends it after that
        many events, whichever comes first
        (without `seconds` the default length is 1000 events), and `tempo` (BPM)
        and `program` (General MIDI) rewrite the file's tempo and instruments.

        temperature 0 is greedy; top_k and top_p filter the distribution first;
        `seed` makes a sample repeatable (on the same device). Bad values raise
        ArgumentError (a ValueError) naming the parameter.

        With `beam` (text only), no sampling: a beam search of that width
        (chargen/sampling/beam.py) returns the most probable continuation it finds,
        or the `n` best distinct ones (n <= beam), beams that generated `stop`
        ranked against the others by their mean log-probability per character.
        Deterministic, so temperature, top_k, top_p and seed do not apply.
        """
        if self.kind == "midi":
            self._refuse_text_options(stop=stop, state=state, beam=beam)
            from chargen.sampling.songs import (
                generate_songs,  # mido, only for a music model
            )

            songs = generate_songs(self.network, self.vocab, self.precision, self.device, prime, length, temperature,
                                   top_k, top_p, seed, n, seconds, prime_seconds, tempo, program, include_prime)
            return songs[0] if n == 1 else songs
        self._refuse_music_options(seconds=seconds, tempo=tempo, program=program,
                                   include_prime=None if include_prime is True else include_prime)
        if beam is not None:  # a search, not sampling: every argument checked before the prime is read
            search = beam_config(beam, n, DEFAULT_LENGTH if length is None else length, stop,
                                 temperature=None if temperature == 1.0 else temperature, top_k=top_k, top_p=top_p,
                                 seed=seed)
            start = self.prime_state(prime, state)
            texts = beam_texts(self.network, self.vocab, (start.hidden, start.logits), search, self.precision)
            return texts[0] if n == 1 else texts
        steps = self._text_pieces(prime, length, temperature, top_k, top_p, stop, seed, n, state)  # checks first
        texts = join_pieces(steps, n)
        return texts[0] if n == 1 else texts

    def stream(self, prime: str = "", length: Optional[int] = None, temperature: float = 1.0,
               top_k: Optional[int] = None, top_p: Optional[float] = None, stop: Optional[str] = None,
               seed: Optional[int] = None, n: int = 1, state: Optional[State] = None) -> Iterator:
        """Like generate() for a text model, but yield the new text as it is generated.

        With n == 1 each item is a non-empty str; with n > 1 each item is a list of
        n strings (the new text of each sample at that step, "" for one that is
        waiting or has stopped). Joined, the items give what generate() returns for
        the same arguments and seed. Text that might begin the `stop` string is
        held back until it is known not to, so every item can be shown at once.
        """
        self._require_text("stream")
        pieces = self._text_pieces(prime, length, temperature, top_k, top_p, stop, seed, n, state)
        return _single(pieces) if n == 1 else pieces  # checked now; generated as the caller reads

    def _text_pieces(self, prime, length, temperature, top_k, top_p, stop, seed, n, state) -> Iterator[list[str]]:
        """Check every argument now, then return an iterator of each step's new text per sample."""
        config = sample_config(temperature, top_k, top_p, DEFAULT_LENGTH if length is None else length, n,
                               self.precision.name)
        if stop is not None and not isinstance(stop, str):
            raise ArgumentError("stop", f"must be a str, got {type(stop).__name__}")
        prime = self._check_prime(prime)
        start = None
        if state is not None:
            self._check_state(state)
            start = (state.hidden, state.logits)
        elif not prime:
            prime = self._default_prime()
        generator = random_generator(self.device, seed)
        return generate_text(self.network, self.vocab, prime, config, generator, stop=stop or None, start=start)

    # -- suggestions ----------------------------------------------------------------------

    def suggest(self, text: str, n: int = 3, unit: str = "word", state: Optional[State] = None) -> list[Suggestion]:
        """The `n` most probable distinct completions of `text` to the end of a word, a
        phrase or a line (`unit`), most probable first, each a Suggestion(text, probability).

        Found by a bounded search over characters (chargen/sampling/suggest.py), not by
        sampling: each probability is the model's, given `text`. With `state` (from
        prime_state), `text` is what was written since that state, and only it is read:
        an editor keeps the state of its document and asks again after each few
        characters typed. A unit the vocabulary cannot end (a line, for a model that
        never writes a newline) is an ArgumentError, as are an empty text without a state,
        characters outside the vocabulary and n < 1.
        """
        self._require_text("suggest")
        SAMPLES.check(n)
        suggestion_rules(self.vocab.tokens, unit)  # the unit first: it does not depend on the text
        if not isinstance(text, str):
            raise ArgumentError("text", f"must be a str, got {type(text).__name__}")
        text = self.fit(text, "text")
        if state is None and not text:
            raise ArgumentError("text", "is empty; give the text to continue")
        start = self.prime_state(text, state)
        return suggest(self.network, self.vocab.tokens, (start.hidden, start.logits), n=n, unit=unit,
                       precision=self.precision)

    def sampling_threads(self, length: int = DEFAULT_LENGTH, n: int = 1) -> int:
        """The torch thread count that `chargen sample` and `chargen serve` generate `n` samples
        of `length` tokens on: timed once per model and number of samples, then remembered.

        Generation itself never changes torch's thread count: it runs on the caller's. To
        sample as the commands do, set the count once, before sampling:
        ``torch.set_num_threads(model.sampling_threads(5000))`` (see chargen/sampling/threads.py).
        """
        from chargen.sampling import threads

        key = (min(length, threads.PROBE_ABOVE_TOKENS), n, torch.get_num_threads())
        if key not in self._threads:
            self._threads[key] = threads.choose_threads(self.network, self.precision, length, n)
        return self._threads[key]

    # -- scoring ------------------------------------------------------------------------

    def score(self, text: Union[str, Sequence[str]], batch_size: int = 1) -> float:
        """Bits per character of `text` (per event token for a music model, given a token list).

        The first character is the context for the second, and so on: a text of N
        characters is scored on N - 1 predictions. batch_size > 1 cuts a long text
        into that many streams scored side by side, each from a fresh state:
        faster, and slightly pessimistic.
        """
        BATCH_SIZE.check(batch_size)
        if self.kind == "text":
            if not isinstance(text, str):
                raise ArgumentError("text", f"must be a str for a text model, got {type(text).__name__}")
            text = self.fit(text, "text")
        return self.score_ids(self.vocab.encode(text), batch_size)

    def score_ids(self, ids: torch.Tensor, batch_size: int = SCORE_BATCH_SIZE) -> float:
        """Bits per token of token ids (N,) under the model; see score()."""
        from chargen.training.loop import TrainConfig
        from chargen.training.validation import evaluate

        if len(ids) < 2:
            raise ArgumentError("text", f"is too short to score: it has {len(ids)} token(s), at least 2 are needed")
        seq_len = int(self.train_config.get("seq_len", TrainConfig.seq_len))
        return evaluate(self.network, ids, batch_size, seq_len, precision=self.precision)

    def score_file(self, path: PathLike, batch_size: int = SCORE_BATCH_SIZE) -> "FileScore":
        """Bits per character (per token, for music) of a text file, or of a MIDI file or
        folder for a music model, scored in `batch_size` streams as `chargen eval` does."""
        from chargen.data.corpus import load_corpus
        from chargen.training.loop import TrainConfig
        from chargen.training.validation import cold_passages, cold_start

        # The file is read as the model's corpus was: a model from before --line-endings kept them.
        corpus = load_corpus([os.fspath(path)], format=self.kind, val_frac=0.0, vocab=self.vocab,
                             line_endings=self.train_config.get("line_endings", "keep"))
        if corpus.vocab != self.vocab:  # ids of another vocabulary would score silently wrong
            raise ArgumentError("file", f"{path} was read with a vocabulary other than the model's")
        if len(corpus.train) < 2:
            raise ArgumentError("file", f"{path} is too short to score: it needs at least 2 tokens")
        from chargen.training.run import bits_per_note

        bits = self.score_ids(corpus.train, batch_size)
        passages = cold_passages(corpus.train, self.vocab)
        seq_len = int(self.train_config.get("seq_len", TrainConfig.seq_len))  # as score_ids() reads it
        return FileScore(bits=bits, tokens=len(corpus.train), skipped=list(corpus.skipped),
                         bits_per_note=bits_per_note(bits, corpus.train, self.vocab, batch_size, seq_len),
                         cold_bits=cold_start(self.network, passages, precision=self.precision), passages=len(passages))

    # -- facts -----------------------------------------------------------------------------

    def info(self) -> dict:
        """Plain facts about the model and its run, as `chargen info --json` prints them.

        For a model loaded from a run, progress (step, epochs, tokens, time,
        history) comes from the run's last.pt, which the run writes last, and the
        best validation figure from its best.pt (chargen/training/facts.py).
        """
        from chargen.training.facts import run_facts

        return {
            "checkpoint": None if self.file is None else str(self.file),
            "model": self.config.to_dict(),
            "vocab": {"kind": self.kind, "size": len(self.vocab), "version": self.vocab.version},
            "parameters": self.network.num_parameters(),
            **run_facts(self.file, self._payload),
        }

    # -- checks shared by every entry point -------------------------------------------

    def _check_prime(self, prime) -> str:
        """A text prime as the model can read it, or an ArgumentError saying why not.

        A str is text, never a file name: no prime can make chargen open a file (the
        CLI, where a user may type a MIDI file's name by mistake, checks for that)."""
        if isinstance(prime, os.PathLike):
            raise ArgumentError("prime", f"{os.fspath(prime)} is a file, but this is a text model; prime it with text")
        if not isinstance(prime, str):
            raise ArgumentError("prime", f"must be a str for a text model, got {type(prime).__name__}")
        return self.fit(prime, "prime")

    def fit(self, text: str, parameter: str = "text") -> str:
        """`text` as this model reads it: in Unicode NFC (Vocab.fit), and with \\n line endings
        where its corpus was read so (`--line-endings normalize`, the default; or where the
        vocabulary has no \\r at all), so a prime typed with \\r\\n means what it meant in the
        corpus. ArgumentError(`parameter`) lists the characters the vocabulary lacks."""
        if self.train_config.get("line_endings") == "normalize" or "\r" not in self.vocab.index:
            text = normalize_line_endings(text)
        return self.vocab.fit(text, parameter)

    def _check_state(self, state) -> None:
        """ArgumentError unless `state` came from this model's prime_state()."""
        if not isinstance(state, State):
            raise ArgumentError("state", f"must be a State from prime_state(), got {type(state).__name__}")
        if state.model_id != self._identity:
            made_by = f"a {state.model}" if state.model else "no model's prime_state()"
            raise ArgumentError("state", f"belongs to another model: it was made by {made_by}, and this is "
                                         f"a {self._shape()}; a state continues only the model that made it")
        if not same_device(state.logits.device, self.device):
            raise ArgumentError("state", f"is on {state.logits.device}, and this model runs on {self.device}")

    def _shape(self) -> str:
        c = self.config
        return f"{c.cell} {c.num_layers}x{c.hidden_size} model of vocabulary {len(self.vocab)}"

    def _default_prime(self) -> str:
        """Without a prime, start as a fresh line would: a newline if the vocabulary has one."""
        return "\n" if "\n" in self.vocab.index else self.vocab.tokens[0]

    def _require_text(self, what: str) -> None:
        if self.kind != "text":
            raise ArgumentError("model", f"is a music model; {what}() is for text models (use generate())")

    def _refuse_music_options(self, **options) -> None:
        for name, value in options.items():
            if value is not None:
                raise ArgumentError(name, "is for music models; this is a text model")

    def _refuse_text_options(self, **options) -> None:
        for name, value in options.items():
            if value is not None:
                raise ArgumentError(name, "is for text models; this is a music model")

def join_pieces(steps: Iterator[list[str]], n: int) -> list[str]:
    """Each of n samples' text from the pieces stream() yields at each step: appended to a list
    per sample and joined once, so a long sample costs linear time (adding strings costs quadratic)."""
    pieces: list[list[str]] = [[] for _ in range(n)]
    for step in steps:
        for sample, piece in zip(pieces, step):
            sample.append(piece)
    return ["".join(sample) for sample in pieces]


def _single(pieces: Iterator[list[str]]) -> Iterator[str]:
    """The non-empty pieces of a one-sample stream, as plain strings."""
    for (piece,) in pieces:
        if piece:
            yield piece

