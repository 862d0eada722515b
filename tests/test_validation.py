"""chargen.training.validation: one measure at every validation, and the cold-start figure."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_LAYOUT, TINY_MODEL, TINY_TEXT, tiny_model

from chargen.data.batching import batchify
from chargen.training.validation import (
    PASSAGE_TOKENS,
    PASSAGES,
    cold_passages,
    cold_start,
    evaluate,
    validate,
)
from chargen.vocab import Vocab

VOCAB = Vocab.from_text(TINY_TEXT)
IDS = VOCAB.encode(TINY_TEXT)  # 2,980 characters: 4 streams of 745


def _bits_by_hand(model, streams: torch.Tensor, columns: int) -> float:
    """Each stream's first `columns` predictions, read in one pass from zeros: the reference."""
    model.eval()
    with torch.no_grad():
        logits, _ = model(streams[:, :columns].long(), model.init_hidden(len(streams)))
    return F.cross_entropy(logits.flatten(0, 1), streams[:, 1 : columns + 1].long().flatten()).item() / math.log(2)


def test_a_capped_validation_reads_the_first_windows_of_every_stream_not_a_prefix():
    model = tiny_model(vocab_size=len(VOCAB))
    streams = batchify(IDS, 4)  # (4, 745)
    # 100 tokens over 4 streams of 16-token windows: 2 windows (32 columns) of every stream
    assert evaluate(model, IDS, 4, 16, max_tokens=100) == pytest.approx(_bits_by_hand(model, streams, 32), rel=1e-5)
    assert evaluate(model, IDS, 4, 16, max_tokens=100) != pytest.approx(evaluate(model, IDS[:101], 4, 16), rel=1e-3)


def test_validate_reads_the_subset_and_the_whole_set_in_one_pass():
    model = tiny_model(vocab_size=len(VOCAB))
    subset, whole = validate(model, IDS, 4, 16, max_tokens=100, whole=True)
    assert subset == evaluate(model, IDS, 4, 16, max_tokens=100)
    assert whole == pytest.approx(evaluate(model, IDS, 4, 16), rel=1e-9)
    assert whole == pytest.approx(_bits_by_hand(model, batchify(IDS, 4), 744), rel=1e-5)
    assert validate(model, IDS, 4, 16, max_tokens=100) == (subset, None)
    # A cap the held-out set fits in reads it all: the two figures are one.
    fits, all_ = validate(model, IDS, 4, 16, max_tokens=10_000, whole=True)
    assert fits == all_


def test_cold_passages_start_at_the_newline_that_ends_each_blank_line():
    passages = cold_passages(IDS, VOCAB)
    texts = [VOCAB.decode(p.tolist()) for p in passages]
    blank_lines = TINY_TEXT[: len(TINY_TEXT) - PASSAGE_TOKENS - 1].count("\n\n")  # the starts a passage fits after
    assert len(passages) == blank_lines and passages.shape[1] == PASSAGE_TOKENS + 1
    assert all(t.startswith("\n") and not t.startswith("\n\n") for t in texts)
    assert all(TINY_TEXT.find("\n" + t) >= 0 for t in texts)  # each is preceded by the blank line's first newline
    assert {t[1:12] for t in texts} == {"First Citiz", "All:\nSpeak,"}


def test_cold_passages_fall_back_to_lines_then_even_spacing_and_keep_at_most_passages():
    lines = "".join(f"line {i} of a text without blank lines\n" for i in range(400))
    vocab = Vocab.from_text(lines)
    passages = cold_passages(vocab.encode(lines), vocab)
    assert len(passages) == PASSAGES
    assert all(vocab.decode(p.tolist()).startswith("\nline ") for p in passages)
    # Music (or text with no newline at all): evenly spaced, the first at the start.
    music = torch.arange(5_000)  # each token its position
    spread = cold_passages(music, Vocab([str(i) for i in range(5_000)], kind="midi"))
    starts = spread[:, 0]
    assert len(spread) == PASSAGES and starts[0] == 0 and starts[-1] == 5_000 - PASSAGE_TOKENS - 1
    assert set(torch.diff(starts).tolist()) <= {37, 38}  # a regular stride over the whole set
    assert torch.equal(spread, starts.unsqueeze(1) + torch.arange(PASSAGE_TOKENS + 1))
    # A held-out set shorter than a passage: one shorter passage per position, none under 2 tokens.
    assert cold_passages(IDS[:50], VOCAB).shape[1] == 50
    assert len(cold_passages(IDS[:1], VOCAB)) == 0


def test_cold_start_reads_every_passage_from_the_zero_state():
    model = tiny_model(vocab_size=len(VOCAB))
    passages = cold_passages(IDS, VOCAB)
    expected = [_bits_by_hand(model, p.unsqueeze(0), PASSAGE_TOKENS) for p in passages]
    assert cold_start(model, passages) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert math.isnan(cold_start(model, passages[:0]))


def test_best_pt_is_the_better_model_on_the_one_measure_every_validation_uses(tmp_path):
    """best.pt is chosen on one measure (issue 19, section 2). The held-out text here opens
    with an easy stretch ("abab...") that a prefix cap reads alone: the old rule compared
    such friendly prefix scores with the final validation's whole-set score, so a model
    that kept improving never replaced the earlier best.pt. Every validation now scores
    the same spread subset, and best.pt must be the checkpoint that scores best on it."""
    import chargen
    from chargen.data.corpus import load_corpus
    from chargen.training import checkpoint, metrics

    easy, hard = "ab" * 400, TINY_TEXT[:2000]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((easy + hard) * 3 + easy + hard, encoding="utf-8")  # the last quarter is held out
    cap = 600  # fewer than the 2,800 held-out characters; a prefix of 600 is all "abab..."
    run = chargen.train(corpus, tmp_path / "run", val_frac=0.25, steps=60, eval_every=15, eval_tokens=cap, lr=0.01,
                        precision="fp32", progress=False, device="cpu", **TINY_MODEL, **TINY_LAYOUT)
    val = load_corpus([str(corpus)], val_frac=0.25).val
    assert len(val) == len(easy + hard)
    scores = {}
    for name in (checkpoint.BEST, checkpoint.LAST):
        model = chargen.load(run / name, precision="fp32")
        scores[name] = evaluate(model.network, val, TINY_LAYOUT["batch_size"], TINY_LAYOUT["seq_len"], max_tokens=cap)
    rows = metrics.read(run)
    best_row = min((r for r in rows if r["val_bits"] is not None), key=lambda r: r["val_bits"])
    assert checkpoint.load(run / checkpoint.BEST)["state"]["step"] == best_row["step"]
    assert scores[checkpoint.BEST] <= scores[checkpoint.LAST] + 1e-9
    # The whole set is reported apart, at the end, and never decides best.pt.
    assert rows[-1]["val_all_bits"] is not None and all(r["val_all_bits"] is None for r in rows[:-1])


def test_ranks_score_disjoint_shares_whose_sums_give_the_one_process_figures():
    """Under torchrun each rank reads its share of the streams and passages and the sums are
    gathered. Here two ranks are played in turn by a World whose gather records what each sends."""
    from chargen.training.distributed import World

    sent = {}

    class Rank(World):
        def gather_floats(self, *values):
            sent.setdefault(self.rank, []).append(values)
            return torch.tensor([values], dtype=torch.float64)

    model = tiny_model(vocab_size=len(VOCAB))
    passages = cold_passages(IDS, VOCAB)
    for rank in (0, 1):
        validate(model, IDS, 4, 16, max_tokens=100, world=Rank(rank=rank, size=2), whole=True)
        cold_start(model, passages, world=Rank(rank=rank, size=2))
    (val0, cold0), (val1, cold1) = sent[0], sent[1]
    # validate sends (subset bits, subset tokens, all bits, all tokens) in nats; cold_start (bits, tokens)
    both = [a + b for a, b in zip(val0, val1)]
    subset, whole = validate(model, IDS, 4, 16, max_tokens=100, whole=True)
    assert both[1] == 4 * 2 * 16 and val0[1] == val1[1]  # 4 streams x 2 windows of 16, half each
    assert both[0] / both[1] / math.log(2) == pytest.approx(subset, rel=1e-6)
    assert both[2] / both[3] / math.log(2) == pytest.approx(whole, rel=1e-6)
    assert cold0[1] + cold1[1] == passages[:, 1:].numel() and cold0[1] == cold1[1]
    assert (cold0[0] + cold1[0]) / (cold0[1] + cold1[1]) / math.log(2) == pytest.approx(cold_start(model, passages), rel=1e-6)
