"""The default dropout of a new run, chosen by the size of its corpus and the length of its budget.

A run that reads each token many times memorizes its corpus unless dropout holds it
back; one that reads each token once or twice only learns more slowly with it. So
`chargen train` without --dropout asks auto_dropout (measurements in docs/benchmarks.md):

    auto_dropout(train_tokens=1_000_000, config=TrainConfig(minutes=10))   # 0.2
"""

from __future__ import annotations

from chargen.training.loop import TrainConfig

# Dropout by corpus size and budget: what a run needs depends on how often it reads each token.
SMALL_CORPUS_TOKENS = 500_000  # below this, the default model memorizes within minutes
SMALL_CORPUS_DROPOUT = 0.3
LARGE_CORPUS_TOKENS = 10_000_000  # from this size up, a run of hours reads each token about once
MEDIUM_CORPUS_DROPOUT = 0.2
SHORT_RUN_MINUTES = 10  # a --minutes budget under this is short
SHORT_RUN_EPOCHS = 3  # as is a --steps or --epochs budget of fewer passes over the corpus


def auto_dropout(train_tokens: int, config: TrainConfig) -> float:
    """The default dropout for a corpus of this many training tokens and this budget
    (measurements in docs/benchmarks.md):

    - under 500k tokens, 0.3: the 255k-token Bach corpus, best validation 2.60 bits/token
      without dropout, 2.36 with it;
    - up to 10M tokens, 0.2 for a run that reads the corpus several times (Tiny Shakespeare,
      1M tokens, 10 minutes of bf16 training: 2.103 bits/char with 0.2, 2.116 and 2.120
      without), and none for a short one (at 2 and 5 minutes dropout only slowed learning);
    - above that, none: a model that never sees a token twice does not memorize.
    """
    if train_tokens < SMALL_CORPUS_TOKENS:
        return SMALL_CORPUS_DROPOUT
    if train_tokens >= LARGE_CORPUS_TOKENS or _short_budget(train_tokens, config):
        return 0.0
    return MEDIUM_CORPUS_DROPOUT


def _short_budget(train_tokens: int, config: TrainConfig) -> bool:
    """Whether the run's budget (the nearest of its minutes, steps and epochs) is short:
    under SHORT_RUN_MINUTES minutes, or under SHORT_RUN_EPOCHS passes over the corpus."""
    passes = []
    if config.epochs is not None:
        passes.append(config.epochs)
    if config.steps is not None:
        passes.append(config.steps * config.batch_size * config.seq_len / max(train_tokens, 1))
    minutes_short = config.minutes is not None and config.minutes < SHORT_RUN_MINUTES
    return minutes_short or any(p < SHORT_RUN_EPOCHS for p in passes)
