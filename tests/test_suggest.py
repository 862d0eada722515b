"""Suggestions (chargen/sampling/suggest.py) through Model.suggest and `chargen suggest`.

Judged on a model that has learned some English (session_writer_run): every probability
against a plain forward pass (conftest.continuation_log_prob), every completion against
the unit's boundary rule written out again here.
"""

import itertools
import json
import math
import re

import pytest
import torch
from click.testing import CliRunner
from conftest import assert_clean_error, continuation_log_prob, tiny_model

import chargen
from chargen import api
from chargen.api import Model
from chargen.cli import cli
from chargen.vocab import Vocab

TEXTS = ["What is the ma", "First Citizen:\nWe are", "I will not", "MENENIUS:\nO, sir, you are", "ROMEO:\n"]
WORD = "A-Za-z0-9'’_"  # the word characters of an English vocabulary


@pytest.fixture(scope="module")
def writer(session_writer_run):
    return chargen.load(session_writer_run, precision="fp32")


def next_char_probabilities(model, text: str) -> dict[str, float]:
    """The model's distribution of the character after `text`, by a plain forward pass."""
    ids = model.vocab.encode(text).unsqueeze(0)
    with torch.inference_mode():
        logits, _ = model.network(ids, model.network.init_hidden(1))
    return dict(zip(model.vocab.tokens, torch.softmax(logits[0, -1].double(), dim=-1).tolist()))


def independent_probability(model, text: str, completion: str, unit: str) -> float:
    """P(completion, then the unit's end | text), computed from the definitions alone."""
    following = next_char_probabilities(model, text + completion)
    if unit == "word":  # the word, then any character that is not part of a word
        end = sum(p for c, p in following.items() if not re.fullmatch(f"[{WORD}]", c))
    elif unit == "phrase" and completion[-1] in ",;:.!?":  # the punctuation belongs to the phrase
        end = 1.0
    else:  # a phrase or line that ends before a newline
        end = following["\n"]
    return math.exp(continuation_log_prob(model, text, completion)) * end


def ends_at_its_boundary(completion: str, unit: str) -> bool:
    """Whether `completion` is the shortest continuation holding the unit's content and reaching its end."""
    if unit == "word":
        return re.fullmatch(f"[^{WORD}]*[{WORD}]+", completion) is not None
    content = re.search(f"[{WORD}]" if unit == "phrase" else r"\S", completion)
    if content is None:
        return False
    rest = completion[content.start():]
    if unit == "phrase":
        return re.fullmatch(r"[^,;:.!?\n]*[,;:.!?]?", rest) is not None
    return "\n" not in rest


@pytest.mark.parametrize("unit", ["word", "phrase", "line"])
def test_each_suggestion_has_the_probability_the_model_gives_it(writer, unit):
    for text in TEXTS:
        found = writer.suggest(text, n=3, unit=unit)
        assert len(found) == 3
        for s in found:
            assert s.probability == pytest.approx(independent_probability(writer, text, s.text, unit), rel=1e-4)


@pytest.mark.parametrize("unit", ["word", "phrase", "line"])
def test_suggestions_are_distinct_ranked_and_end_at_the_boundary(writer, unit):
    for text in TEXTS:
        found = writer.suggest(text, n=5, unit=unit)
        texts = [s.text for s in found]
        assert len(set(texts)) == len(texts) == 5
        assert [s.probability for s in found] == sorted((s.probability for s in found), reverse=True)
        assert all(ends_at_its_boundary(t, unit) for t in texts), texts


@pytest.mark.parametrize("unit, tokens", [("word", "ab ."), ("phrase", "ab ,\n"), ("line", "a b\n")])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_suggestions_are_the_most_probable_of_every_completion(unit, tokens, seed, monkeypatch):
    """Every string of up to 5 characters over a tiny vocabulary, kept where it is a completion
    and ranked by its probability: the search returns exactly the top of that list."""
    from chargen.sampling import suggest as search

    monkeypatch.setitem(search.MAX_CHARS, unit, 5)
    monkeypatch.setattr(search, "INITIAL_ROOM", 2)  # the store of hidden states grows many times
    model = Model(tiny_model(vocab_size=len(tokens), seed=seed), Vocab(list(tokens)), precision="fp32")
    text = tokens[0] + tokens[1]
    every = ["".join(chars) for k in range(1, 6) for chars in itertools.product(tokens, repeat=k)]
    ranked = sorted(((independent_probability(model, text, c, unit), c) for c in every
                     if ends_at_its_boundary(c, unit)), reverse=True)
    found = model.suggest(text, n=6, unit=unit)
    assert [s.text for s in found] == [c for _, c in ranked[:6]]
    assert [s.probability for s in found] == pytest.approx([p for p, _ in ranked[:6]], rel=1e-5)


def test_past_its_bound_the_search_answers_with_what_it_found(writer):
    from chargen.sampling.suggest import suggest

    start = writer.prime_state("I will not")
    exact = suggest(writer.network, writer.vocab.tokens, (start.hidden, start.logits), n=3, unit="line")
    bounded = suggest(writer.network, writer.vocab.tokens, (start.hidden, start.logits), n=3, unit="line",
                      max_prefixes=8)
    assert 1 <= len(bounded) <= 3 and all(ends_at_its_boundary(s.text, "line") for s in bounded)
    assert bounded[0].probability <= exact[0].probability


def test_a_word_completion_finishes_the_word_being_typed(writer):
    found = writer.suggest("What is the ma", n=5)
    assert all(re.fullmatch(f"[{WORD}]+", s.text) for s in found[:2]), found  # "tter", "n", ...: no space first


def test_suggesting_from_a_state_reads_only_what_was_typed_since(writer, monkeypatch):
    document, typed = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n", "Spe"
    state = writer.prime_state(document)
    read_lengths, real_read = [], api.read
    monkeypatch.setattr(api, "read", lambda network, ids, *rest: read_lengths.append(ids.shape[1])
                        or real_read(network, ids, *rest))
    found = writer.suggest(typed, state=state)
    assert read_lengths == [len(typed)]
    whole = writer.suggest(document + typed)
    assert [s.text for s in found] == [s.text for s in whole]
    assert [s.probability for s in found] == pytest.approx([s.probability for s in whole], rel=1e-5)
    assert writer.suggest("", state=writer.prime_state(typed, state)) == found  # the same, read beforehand


def test_suggestions_in_bf16_match_fp32(session_writer_run, writer):
    bf16 = chargen.load(session_writer_run, precision="bf16")
    for text in TEXTS[:3]:
        found, exact = bf16.suggest(text), writer.suggest(text)
        assert found[0].text == exact[0].text
        assert found[0].probability == pytest.approx(exact[0].probability, rel=0.05)


@pytest.mark.parametrize("tokens, unit, words", [
    ("abc ", "line", "'line' needs a newline"),
    ("abc ", "phrase", "'phrase' needs"),
    (" .,\n", "word", "'word' needs word characters"),
])
def test_a_unit_the_vocabulary_cannot_end_is_refused(tokens, unit, words):
    model = Model(tiny_model(vocab_size=len(tokens)), Vocab(list(tokens)), precision="fp32")
    with pytest.raises(chargen.ArgumentError, match=words) as caught:
        model.suggest(tokens[:2], unit=unit)
    assert caught.value.parameter == "unit"


@pytest.mark.parametrize("arguments, parameter, words", [
    (dict(text=""), "text", "is empty"), (dict(text="a§b"), "text", "'§'"), (dict(text=3), "text", "str"),
    (dict(text="To be", n=0), "n", "between 1 and"), (dict(text="To be", n=2.5), "n", "integer"),
    (dict(text="To be", n=True), "n", "integer"), (dict(text="To be", unit="sentence"), "unit", "word, phrase, line"),
    (dict(text="To be", state="state"), "state", "prime_state"),
])
def test_bad_suggest_arguments_raise_argument_error_naming_the_parameter(writer, arguments, parameter, words):
    with pytest.raises(chargen.ArgumentError, match=words) as caught:
        writer.suggest(**arguments)
    assert caught.value.parameter == parameter


def test_a_music_model_has_no_suggestions(session_music_run):
    with pytest.raises(chargen.ArgumentError, match="music model"):
        chargen.load(session_music_run).suggest("x")


# -- chargen suggest --------------------------------------------------------------------------


def test_suggest_prints_each_completion_with_its_probability(writer, session_writer_run):
    result = CliRunner().invoke(cli, ["suggest", str(session_writer_run), "What is the ma", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    found = writer.suggest("What is the ma")
    assert len(lines) == len(found) == 3
    for line, s in zip(lines, found):
        assert line == f"{100 * s.probability:6.2f}%  {json.dumps(s.text, ensure_ascii=False)}"


def test_suggest_json_and_text_from_stdin(writer, session_writer_run):
    text = "MENENIUS:\nO, sir, you are"
    result = CliRunner().invoke(cli, ["suggest", str(session_writer_run), "-", "--json", "-n", "4", "--unit", "phrase",
                                      "--precision", "fp32"], input=text)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    expected = writer.suggest(text, n=4, unit="phrase")
    assert answer["unit"] == "phrase" and answer["text"] == text
    assert [(s["text"], s["probability"]) for s in answer["suggestions"]] == [(s.text, s.probability) for s in expected]


@pytest.mark.parametrize("arguments, code, words", [
    (["To be", "-n", "0"], 2, "-n"), (["To be", "--unit", "sentence"], 2, "--unit"),
    ([""], 2, "TEXT is empty"), (["a§b"], 2, "TEXT has characters"),
])
def test_suggest_refuses_bad_input_in_one_line(session_writer_run, arguments, code, words):
    result = CliRunner().invoke(cli, ["suggest", str(session_writer_run), *arguments])
    assert_clean_error(result, words, code=code)


def test_suggest_refuses_a_music_model_and_a_missing_text(session_music_run, session_writer_run):
    assert_clean_error(CliRunner().invoke(cli, ["suggest", str(session_music_run), "x"]), "music model", code=1)
    assert_clean_error(CliRunner().invoke(cli, ["suggest"]), "TEXT", code=2)
    assert_clean_error(CliRunner().invoke(cli, ["suggest", "a", "b", "c"]), "at most", code=2)
