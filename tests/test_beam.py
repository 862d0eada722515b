"""Beam search (chargen/sampling/beam.py) through the API and `chargen sample --beam`.

The properties are checked on a model that has learned some English
(session_writer_run), each continuation scored independently by a plain forward pass
(conftest.continuation_log_prob).
"""

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_clean_error, continuation_log_prob, tiny_model

import chargen
from chargen.cli import cli
from chargen.precision import FP32
from chargen.sampling.beam import BatchedSteps, beam_search
from chargen.sampling.generate import PARALLEL_STREAMS, read

PRIMES = ["ROMEO:\n", "First Citizen:\nWe are", "What is the", "I will not", "MENENIUS:\nO"]


@pytest.fixture(scope="module")
def writer(session_writer_run):
    return chargen.load(session_writer_run, precision="fp32")


@pytest.mark.parametrize("prime", PRIMES)
def test_beam_of_one_is_greedy(writer, prime):
    assert writer.generate(prime, length=80, beam=1) == writer.generate(prime, length=80, temperature=0)
    assert (writer.generate(prime, length=300, beam=1, stop="\n\n")
            == writer.generate(prime, length=300, temperature=0, stop="\n\n"))


@pytest.mark.parametrize("width", [2, 4, 8, PARALLEL_STREAMS])
@pytest.mark.parametrize("length", [12, 60])
def test_the_best_beam_is_at_least_as_probable_as_greedy(writer, width, length):
    for prime in PRIMES:
        greedy = writer.generate(prime, length=length, temperature=0)
        best = writer.generate(prime, length=length, beam=width)
        assert len(best) == length
        assert continuation_log_prob(writer, prime, best) >= continuation_log_prob(writer, prime, greedy) - 1e-4


def test_beams_are_distinct_ranked_and_scored_as_the_model_scores_them(writer):
    start = writer.prime_state("What is the")
    beams = beam_search(writer.network, (start.hidden, start.logits), width=8, length=30, results=8)
    texts = [writer.vocab.decode(b.ids) for b in beams]
    assert len(set(texts)) == 8
    independent = [continuation_log_prob(writer, "What is the", t) for t in texts]
    assert independent == pytest.approx([b.log_prob for b in beams], abs=1e-3)
    assert independent == sorted(independent, reverse=True)
    # The API returns the same texts, best first.
    assert writer.generate("What is the", length=30, beam=8, n=8) == texts


@pytest.mark.parametrize("prime, stop, ending", [("What is the", " ", True), ("I will not", "th", True),
                                                 ("First Citizen:\nWe are", "\n", False)])
def test_beams_that_generate_the_stop_string_are_ranked_by_their_mean_log_probability(writer, prime, stop, ending):
    start = writer.prime_state(prime)
    beams = beam_search(writer.network, (start.hidden, start.logits), width=6, length=40, results=6,
                        stop=writer.vocab.encode(stop).tolist())
    texts = [writer.vocab.decode(b.ids) for b in beams]
    assert len(set(texts)) == 6 and any(b.finished for b in beams) == ending
    for beam, text in zip(beams, texts):  # ended at the first stop string, or ran to the length
        assert text.find(stop) == (len(text) - len(stop) if beam.finished else -1)
        assert beam.finished or len(text) == 40
    means = [continuation_log_prob(writer, prime, t) / len(t) for t in texts]
    assert means == pytest.approx([b.score for b in beams], abs=1e-4)
    assert means == sorted(means, reverse=True)
    # Never worse than greedy decoding with the same stop string, per character.
    greedy = writer.generate(prime, length=40, temperature=0, stop=stop)
    greedy += stop if len(greedy) < 40 else ""
    assert means[0] >= continuation_log_prob(writer, prime, greedy) / len(greedy) - 1e-5
    # The API returns the same texts, the stop strings left out.
    assert writer.generate(prime, length=40, beam=6, n=6, stop=stop) == [
        t[: -len(stop)] if b.finished else t for b, t in zip(beams, texts)]


def test_beam_search_from_a_state_equals_beam_search_from_the_whole_prime(writer):
    state = writer.prime_state("First Citizen:\n")
    assert (writer.generate("We are", state=state, length=40, beam=4, n=2)
            == writer.generate("First Citizen:\nWe are", length=40, beam=4, n=2))


def test_beam_search_in_bf16_is_deterministic_and_greedy_at_width_one(session_writer_run):
    model = chargen.load(session_writer_run, precision="bf16")
    for prime in PRIMES[:3]:
        assert model.generate(prime, length=60, beam=1) == model.generate(prime, length=60, temperature=0)
        beams = model.generate(prime, length=60, beam=4, n=4)
        assert beams == model.generate(prime, length=60, beam=4, n=4) and len(set(beams)) == 4


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("width", [3, PARALLEL_STREAMS])
@torch.inference_mode()
def test_batched_steps_reorder_streams_as_the_model_would(cell, width):
    """Stream i continues stream parents[i]'s state: the same logits as the model run on each
    beam's whole history, on the fused path (few streams) and the model's own (many)."""
    model = tiny_model(cell, vocab_size=12).eval()
    generator = torch.Generator().manual_seed(0)
    prime = torch.tensor([[1, 2, 3]])
    _, hidden = read(model, prime, model.init_hidden(1))
    steps = BatchedSteps(model, hidden, width, FP32)
    histories = [[] for _ in range(width)]
    for _ in range(5):
        parents = torch.randint(0, width, (width,), generator=generator)
        ids = torch.randint(0, 12, (width,), generator=generator)
        histories = [histories[p] + [int(i)] for p, i in zip(parents.tolist(), ids)]
        logits = steps(parents, ids).clone()
    expected, _ = model(torch.cat([prime.expand(width, -1), torch.tensor(histories)], dim=1), model.init_hidden(width))
    torch.testing.assert_close(logits, expected[:, -1], atol=1e-5, rtol=1e-4)


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("arguments, parameter", [
    (dict(beam=0), "beam"), (dict(beam=2.5), "beam"), (dict(beam=True), "beam"),
    (dict(beam=2, n=3), "n"), (dict(beam=2, temperature=0.8), "temperature"),
    (dict(beam=2, top_k=5), "top_k"), (dict(beam=2, top_p=0.9), "top_p"), (dict(beam=2, seed=1), "seed"),
    (dict(beam=2, length=-1), "length"), (dict(beam=2, stop=3), "stop"),
])
def test_bad_beam_arguments_raise_argument_error_naming_the_parameter(writer, arguments, parameter):
    with pytest.raises(chargen.ArgumentError) as caught:
        writer.generate("To be", **{"length": 10} | arguments)
    assert caught.value.parameter == parameter


def test_a_music_model_refuses_beam_search(session_music_run):
    with pytest.raises(chargen.ArgumentError, match="beam is for text models"):
        chargen.load(session_music_run).generate(length=10, beam=2)
    result = CliRunner().invoke(cli, ["sample", str(session_music_run), "--beam", "2", "--length", "10"])
    assert_clean_error(result, "--beam is for text models", code=2)


# -- the command line -----------------------------------------------------------------------


def test_sample_beam_prints_the_best_continuations(writer, session_writer_run):
    run = str(session_writer_run)
    common = ["sample", run, "--prime", "What is the", "--length", "40", "--precision", "fp32"]
    one = CliRunner().invoke(cli, [*common, "--beam", "4"])
    assert one.exit_code == 0, one.output
    assert one.stdout == "What is the" + writer.generate("What is the", length=40, beam=4) + "\n"
    greedy = CliRunner().invoke(cli, [*common, "--temp", "0"])
    assert CliRunner().invoke(cli, [*common, "--beam", "1"]).stdout == greedy.stdout
    several = CliRunner().invoke(cli, [*common, "--beam", "4", "--num-samples", "3"])
    assert several.exit_code == 0, several.output
    for text in writer.generate("What is the", length=40, beam=4, n=3):
        assert "What is the" + text + "\n" in several.stdout


@pytest.mark.parametrize("options, words", [
    (["--beam", "0"], "--beam"), (["--beam", "2", "--num-samples", "3"], "--num-samples"),
    (["--beam", "2", "--temp", "0.5"], "--temp"), (["--beam", "2", "--seed", "3"], "--seed"),
    (["--beam", "2", "--top-p", "0.5"], "--top-p"),
])
def test_sample_beam_refuses_what_does_not_apply_in_one_line(session_writer_run, options, words):
    result = CliRunner().invoke(cli, ["sample", str(session_writer_run), "--length", "5", *options])
    assert_clean_error(result, words, code=2)
