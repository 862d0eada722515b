"""chargen serve for writing: POST /api/suggest, beam search in /api/generate, and rnn-writer's
GET /generate answering with suggestions; through Starlette's TestClient, on the session's
model that has learned some English."""

import pytest

starlette = pytest.importorskip("starlette", reason="chargen serve needs the serve extra")

from starlette.testclient import TestClient  # noqa: E402

from chargen.serve import app as server  # noqa: E402
from chargen.serve import models as serving  # noqa: E402
from chargen.serve.primecache import PrimeCache  # noqa: E402
from chargen.serve.requests import Limits  # noqa: E402

LIMITS = Limits(max_length=300, max_samples=4, max_request_bytes=20_000)
LOCAL = "http://127.0.0.1:8000"  # a name this server answers (TestClient's own, testserver, is not)


@pytest.fixture(scope="module")
def served(session_writer_run, session_music_run):
    return serving.load_models([str(session_writer_run), str(session_music_run)], Limits())


@pytest.fixture
def writer(served):
    for s in served:  # each test starts with empty prime caches
        s.cache = PrimeCache(LIMITS.cache_size)
    return served[0]


@pytest.fixture
def client(served, writer):
    return TestClient(server.create_app(served, LIMITS), base_url=LOCAL)


def as_pairs(suggestions) -> list[tuple[str, float]]:
    return [(s.text, s.probability) for s in suggestions]


@pytest.mark.parametrize("unit", ["word", "phrase", "line"])
def test_suggest_answers_what_the_python_api_answers(client, writer, unit):
    text = "MENENIUS:\nO, sir, you are"
    answer = client.post("/api/suggest", json={"text": text, "n": 4, "unit": unit}).json()
    assert set(answer) == {"model", "unit", "suggestions", "prime_reused", "time"}
    assert answer["model"] == writer.name and answer["unit"] == unit and answer["prime_reused"] == 0
    assert [(s["text"], s["probability"]) for s in answer["suggestions"]] == as_pairs(
        writer.model.suggest(text, n=4, unit=unit))


def test_a_follow_up_after_more_typing_reads_only_the_new_characters(client, writer):
    document = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, spe"
    first = client.post("/api/suggest", json={"text": document}).json()
    assert first["prime_reused"] == 0
    typed = document + "ak.\n\nFirst Citizen:\nYou"
    follow_up = client.post("/api/suggest", json={"text": typed}).json()
    assert follow_up["prime_reused"] == len(document)
    assert [s["text"] for s in follow_up["suggestions"]] == [s.text for s in writer.model.suggest(typed)]


def test_generate_with_beam_answers_the_best_beams(client, writer):
    answer = client.post("/api/generate", json={"prime": "What is the", "length": 30, "beam": 4, "n": 2}).json()
    assert answer["samples"] == writer.model.generate("What is the", length=30, beam=4, n=2)


@pytest.mark.parametrize("body, status, words", [
    ({"text": ""}, 400, "text is empty"),
    ({}, 400, "text is empty"),
    ({"text": "First ☃"}, 400, "text has characters the model's vocabulary lacks: '☃'"),
    ({"text": "To be", "n": 5}, 400, "n must be an integer between 1 and 4"),
    ({"text": "To be", "n": 0}, 400, "n must be an integer between 1 and 4"),
    ({"text": "To be", "unit": "sentence"}, 400, "unit must be one of word, phrase, line"),
    ({"text": "To be", "temperature": 0.5}, 400, "unknown field 'temperature'"),
    ({"text": 42}, 400, "text must be a string"),
    ({"text": "To be", "model": "nope"}, 404, "unknown model"),
    ({"text": "a" * 40_000}, 413, "limit"),
    ([1], 400, "must be a JSON object"),
])
def test_bad_suggest_requests_get_a_4xx_naming_the_problem(client, body, status, words):
    response = client.post("/api/suggest", json=body)
    assert response.status_code == status and words in response.json()["error"]


def test_suggest_refuses_a_music_model_and_a_get(client, served):
    music = client.post("/api/suggest", json={"text": "x", "model": served[1].name})
    assert music.status_code == 400 and "writes music" in music.json()["error"]
    assert client.get("/api/suggest").status_code == 405
    truncated = client.post("/api/suggest", content=b'{"text": ', headers={"Content-Type": "application/json"})
    assert truncated.status_code == 400 and "malformed JSON" in truncated.json()["error"]
    assert client.post("/api/suggest", content=b'{"text": "x"}').status_code == 415  # JSON only, as for generate


@pytest.mark.parametrize("body, words", [
    ({"beam": 5}, "beam must be an integer between 1 and 4"),
    ({"beam": 0}, "beam must be an integer between 1 and 4"),
    ({"beam": 2, "n": 3}, "n must be an integer between 1 and 2"),
    ({"beam": 2, "stream": True}, "stream does not work with beam"),
    ({"beam": 2, "temperature": 0.5}, "temperature does not apply to beam search"),
    ({"beam": 2, "seed": 1}, "seed does not apply to beam search"),
])
def test_bad_beam_requests_get_a_400_naming_the_problem(client, body, words):
    response = client.post("/api/generate", json={"prime": "To be", "length": 10, **body})
    assert response.status_code == 400 and words in response.json()["error"]


def test_a_music_model_refuses_beam_search_over_http(client, served):
    response = client.post("/api/generate", json={"model": served[1].name, "beam": 2, "length": 10})
    assert response.status_code == 400 and "beam is for text models" in response.json()["error"]


def test_rnn_writer_query_answers_suggestions_when_asked(served, writer):
    text = "I will not"
    expected = writer.model.suggest(text, n=3, unit="phrase")
    asked = TestClient(server.create_app(served, LIMITS), base_url=LOCAL).get(
        "/generate", params={"start_text": text, "n": 3, "unit": "phrase"}).json()
    assert asked["completions"] == [s.text for s in expected]
    assert asked["probabilities"] == [s.probability for s in expected]
    by_default = TestClient(server.create_app(served, LIMITS, completion_mode="phrase"), base_url=LOCAL).get(
        "/generate", params={"start_text": text, "n": 3}).json()
    assert by_default["completions"] == asked["completions"]
    sampled = TestClient(server.create_app(served, LIMITS), base_url=LOCAL).get("/generate", params={"start_text": text, "n": 3})
    assert "probabilities" not in sampled.json()  # torch-rnn-server's answer, as before


@pytest.mark.parametrize("params, words", [
    ({"start_text": "x", "unit": "sentence"}, "unit must be one of word, phrase, line"),
    ({"start_text": "x", "unit": "word", "temperature": "0.5"}, "temperature does not apply to suggestions"),
    ({"start_text": "", "unit": "word"}, "start_text is empty"),
])
def test_bad_suggestion_queries(client, params, words):
    response = client.get("/generate", params=params)
    assert response.status_code == 400 and words in response.json()["error"]
