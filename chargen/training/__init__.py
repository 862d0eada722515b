"""Training: the TBPTT loop, a run on disk (checkpoints, metrics, resume), data-parallel ranks, and chargen.train()."""
