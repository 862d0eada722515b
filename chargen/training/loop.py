"""Training with truncated backpropagation through time (TBPTT).

The corpus is cut into `batch_size` contiguous streams (see batching.batchify).
Each step trains on the next window of `seq_len` tokens of every stream, then
carries the final hidden state into the next window, detached so gradients
stop at the window boundary (Williams & Peng, 1990; the word_language_model
example's repackage_hidden). The state is reset to zeros at each epoch.
Validation (on held-out text, and from a cold start) is validation.py's.

Everything a run needs to continue exactly where it stopped (the step, the data
position, the carried hidden state, the RNG state) lives in TrainState, which
the checkpoint stores next to the model and optimizer.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from chargen.data.augment import AUGMENTS, MAX_TRANSPOSE, TRANSPOSE_SEMITONES, Augmenter
from chargen.data.batching import batchify, get_window, num_windows
from chargen.errors import ArgumentError, TrainingError
from chargen.model import CharRNN, Hidden, detach_hidden, map_hidden
from chargen.precision import PRECISIONS, choose_precision
from chargen.training.distributed import World
from chargen.training.validation import cold_start, to_fp32, validate

LN2 = math.log(2.0)


@dataclass
class TrainConfig:
    """How to train. Each field is the CLI option of the same name."""

    # Small windows and batches: on a CPU budget many cheap updates beat few large ones
    # (2-minute Tiny Shakespeare comparisons in docs/benchmarks.md).
    seq_len: int = 64  # tokens per TBPTT window
    batch_size: int = 16  # parallel streams
    lr: float = 3e-3
    lr_min: float = 0.1  # the cosine schedule decays to lr * lr_min over the run's budget
    warmup: int = 50  # steps of linear warm-up
    clip: float = 1.0  # max global gradient norm
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    epochs: Optional[float] = None
    steps: Optional[int] = None
    minutes: Optional[float] = None
    val_frac: float = 0.1
    # Steps between validations (and checkpoints). Not fewer: a validation of Tiny Shakespeare's
    # 111k held-out tokens costs as much as 24 training steps of the default model, so every 200
    # steps spent 11% of a run's time validating; every 500, 5% (docs/benchmarks.md).
    eval_every: int = 500
    # Held-out tokens per validation: the first windows of every validation stream, spread over
    # the held-out set and the same each time, so best.pt is chosen on one measure (validation.py).
    # The last validation also reads them all, reported apart. Not fewer: fewer is noisier.
    eval_tokens: int = 200_000
    seed: int = 1111
    precision: str = "auto"  # auto | fp32 | bf16: bf16 products (mixed precision) where the hardware has them
    encoding_errors: str = "strict"  # invalid UTF-8 in a text corpus: "strict" (an error) or "replace" (U+FFFD)
    line_endings: str = "normalize"  # "normalize": \r\n and \r read as \n, as in Python's text mode; "keep": as they are
    augment: str = "auto"  # music: each piece in a new key (or tempo) every epoch (chargen.data.augment); auto: as measured best
    transpose: int = TRANSPOSE_SEMITONES  # with augment: semitones a piece may move either way
    # A corpus read from a pipe, FIFO or stdin stops with an error past this many MiB (a regular
    # file has a size and no limit): `chargen train <(yes)` would otherwise fill memory.
    max_stream_mb: int = 1024

    def __post_init__(self):
        positive = ("seq_len", "batch_size", "eval_every", "eval_tokens", "max_stream_mb")
        for name in positive:
            if getattr(self, name) < 1:
                raise ArgumentError(name, f"must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ArgumentError("lr", f"must be > 0, got {self.lr}")
        if not 0 <= self.lr_min <= 1:
            raise ArgumentError("lr_min", f"must be in [0, 1], got {self.lr_min}")
        if not self.weight_decay >= 0:
            raise ArgumentError("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if not self.clip > 0:
            raise ArgumentError("clip", f"must be > 0, got {self.clip}")
        for name in ("epochs", "steps", "minutes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ArgumentError(name, f"must be > 0, got {value}")
        if not 0 <= self.val_frac < 1:
            raise ArgumentError("val_frac", f"must be in [0, 1), got {self.val_frac}")
        if self.precision not in PRECISIONS:
            raise ArgumentError("precision", f"must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.encoding_errors not in ("strict", "replace"):
            raise ArgumentError("encoding_errors", f"must be 'strict' or 'replace', got {self.encoding_errors!r}")
        if self.line_endings not in ("normalize", "keep"):
            raise ArgumentError("line_endings", f"must be 'normalize' or 'keep', got {self.line_endings!r}")
        if self.augment not in AUGMENTS:
            raise ArgumentError("augment", f"must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if not 0 <= self.transpose <= MAX_TRANSPOSE:
            raise ArgumentError("transpose", f"must be between 0 and {MAX_TRANSPOSE} semitones, got {self.transpose}")
        if self.epochs is None and self.steps is None and self.minutes is None:
            self.epochs = 10

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainState:
    """Where a run stands: enough, with model and optimizer, to resume it bit for bit."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # completed passes over the training streams
    window: int = 0  # next window within the current epoch
    hidden: Optional[Hidden] = None  # carried into the next window (None: zeros); full batch at checkpoints
    rng: Optional[torch.Tensor] = None  # torch's CPU generator state after the last step; (W, N) for W ranks
    best_val: float = math.inf  # best validation bits per token so far
    elapsed: float = 0.0  # seconds of training, over all sessions of the run
    tokens: int = 0  # training tokens seen
    history: list = field(default_factory=list)  # [step, train bits, val bits or None]; val on eval_tokens
    augment: Optional[dict] = None  # this epoch's augmentation draws (chargen.data.augment); None: none yet

    def to_dict(self) -> dict:
        return asdict(self) | {"hidden": self.hidden, "rng": self.rng, "augment": self.augment}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainState":
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in known})
        if isinstance(state.hidden, list):
            state.hidden = tuple(state.hidden)
        return state


def learning_rate(config: TrainConfig, progress: float, step: int) -> float:
    """Linear warm-up, then cosine decay from lr to lr * lr_min as progress goes 0 -> 1."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(max(progress, 0.0), 1.0)
    return config.lr * (config.lr_min + (1 - config.lr_min) * 0.5 * (1 + math.cos(math.pi * progress)))


def progress_of(config: TrainConfig, state: TrainState, windows_per_epoch: int) -> float:
    """How far through its budget the run is, 0 to 1: the nearest of epochs, steps and minutes."""
    done = []
    if config.epochs is not None:
        done.append((state.epoch + state.window / windows_per_epoch) / config.epochs)
    if config.steps is not None:
        done.append(state.step / config.steps)
    if config.minutes is not None:
        done.append(state.elapsed / (60 * config.minutes))
    return max(done)


Callback = Callable[[str, dict], None]


def train(
    model: CharRNN,
    optimizer: torch.optim.Optimizer,
    train_ids: torch.Tensor,
    val_ids: torch.Tensor,
    config: TrainConfig,
    state: TrainState,
    callback: Optional[Callback] = None,
    should_stop: Callable[[], bool] = lambda: False,
    world: Optional[World] = None,
    augment: Optional[Augmenter] = None,
    cold_passages: Optional[torch.Tensor] = None,
) -> TrainState:
    """Train until a budget (epochs, steps, minutes) is spent or `should_stop()` says so.

    `callback(event, info)` hears "step" after every step, "eval" after each
    validation (the moment to save a checkpoint: `state` is consistent then),
    and "stop" when the loop ends. Every validation scores the same eval_tokens
    held-out tokens (val_bits, by which best_val is kept), the last one all of them
    too (val_all_bits), and with `cold_passages` the cold-start figure (cold_bits;
    see validation.py). Raises TrainingError if the loss diverges;
    the model is then left as it was before the bad step.

    With a `world` of several ranks (see distributed.py), this rank trains on its
    share of the streams, gradients are averaged, and every rank calls `callback`.

    Under bf16 (config.precision, see precision.py) only the products run in bf16:
    the weights, the optimizer state, the loss and the carried hidden state stay fp32.

    With an `augment`er (music), each epoch trains on the pieces rewritten by that
    epoch's draws, which `state.augment` keeps; validation always reads `val_ids` as they are.
    """
    callback = callback or (lambda event, info: None)
    world = world or World()
    world.check_batch_size(config.batch_size)
    device = next(model.parameters()).device
    precision = choose_precision(config.precision, device)

    def epoch_streams() -> torch.Tensor:
        """This rank's streams (B / W, N) of the current epoch: the corpus, or its augmented copy."""
        ids = train_ids
        if augment is not None:
            if state.augment is None or state.augment["epoch"] != state.epoch:
                state.augment = augment.draw(state.epoch)
            ids = augment.apply(state.augment)
        return batchify(ids, config.batch_size)[world.rows(config.batch_size)].to(device)

    streams = epoch_streams()
    batch_size = len(streams)  # this rank's streams
    windows = num_windows(streams, config.seq_len)
    if state.rng is not None:
        torch.set_rng_state(world.local_rng(state.rng, config.seed))
    elif not world.is_main:
        torch.manual_seed(config.seed + world.rank)  # each rank draws its own dropout masks
    hidden = model.init_hidden(batch_size) if state.hidden is None else map_hidden(lambda h: h.to(device), world.local_hidden(state.hidden))
    net = world.wrap(model)  # the model itself in one process
    model.train()
    session_start, elapsed_before = time.perf_counter(), state.elapsed

    def budget_spent() -> bool:
        return progress_of(config, state, windows) >= 1.0

    def gather_state() -> None:
        """Before a checkpoint moment: every rank's rows of the carried state, as one full batch."""
        state.hidden = world.gather_hidden(detach_hidden(hidden))
        state.rng = world.gather_rng(torch.get_rng_state())

    interrupted = False
    while not budget_spent():
        lr = learning_rate(config, progress_of(config, state, windows), state.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = get_window(streams, state.window, config.seq_len)
        hidden = detach_hidden(hidden)  # gradients stop at the window boundary
        with precision.autocast():
            logits, hidden = net(x, hidden)
        # The loss in fp32 from (possibly bf16) logits; the state carried on in fp32, so a
        # resumed run (its hidden state read back from a checkpoint) continues bit for bit.
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        hidden = to_fp32(hidden)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clip the global gradient norm: one long-range spike must not undo training.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        # The whole batch's loss, and the slowest rank's clock, so that every rank
        # reports the same numbers and sees a --minutes budget run out at the same step.
        shared = world.gather_floats(loss.item(), elapsed_before + time.perf_counter() - session_start)
        train_bits = shared[:, 0].mean().item() / LN2
        if not math.isfinite(train_bits) or not math.isfinite(grad_norm.item()):
            raise TrainingError(
                f"the loss diverged (became {train_bits:.3g}) at step {state.step + 1}; "
                "the last checkpoint is kept; try a lower --lr or --clip"
            )
        optimizer.step()

        state.step += 1
        state.tokens += y.numel() * world.size
        state.window += 1
        if state.window == windows:  # epoch boundary: start the streams again from zeros
            state.epoch, state.window = state.epoch + 1, 0
            hidden = model.init_hidden(batch_size)
            if augment is not None:
                streams = epoch_streams()
        state.hidden = detach_hidden(hidden)
        state.elapsed = shared[:, 1].max().item()
        state.rng = torch.get_rng_state()
        info = {"lr": lr, "train_bits": train_bits, "grad_norm": grad_norm.item(), "windows": windows}
        callback("step", info)

        final = budget_spent()
        if state.step % config.eval_every == 0 or final:
            # Every validation scores the same tokens (one measure for best_val); the last, all too.
            eval_start = time.perf_counter()
            val, val_all = validate(model, val_ids, config.batch_size, config.seq_len, config.eval_tokens, world,
                                    precision, whole=final)
            cold = None if cold_passages is None else cold_start(model, cold_passages, world, precision)
            info["eval_seconds"] = time.perf_counter() - eval_start
            is_best = math.isfinite(val) and val < state.best_val
            if is_best:
                state.best_val = val
            state.history.append([state.step, train_bits, None if math.isnan(val) else val])
            state.elapsed = elapsed_before + time.perf_counter() - session_start
            gather_state()
            callback("eval", info | {"val_bits": val, "val_all_bits": val_all, "cold_bits": cold, "is_best": is_best,
                                     "final": final})
        # Ranks stop together: when any was asked to, and when the slowest clock says so.
        shared = world.gather_floats(float(should_stop()), state.elapsed)
        state.elapsed = shared[:, 1].max().item()
        if shared[:, 0].any():
            interrupted = True
            break
    gather_state()
    callback("stop", {"windows": windows, "interrupted": interrupted})
    return state
