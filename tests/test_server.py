"""chargen serve: every endpoint through Starlette's TestClient, on tiny models trained in the session."""

import asyncio
import base64
import io
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import mido
import pytest

starlette = pytest.importorskip("starlette", reason="chargen serve needs the serve extra")

from conftest import TINY_TEXT, as_from_a_terminal  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import chargen  # noqa: E402
from chargen.serve import app as server  # noqa: E402
from chargen.serve import models as serving
from chargen.serve.primecache import PrimeCache  # noqa: E402
from chargen.serve.requests import Limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served(session_text_run, session_music_run):
    """The two tiny models as a server holds them (loaded once for this module)."""
    return serving.load_models([str(session_text_run), str(session_music_run)], Limits())


@pytest.fixture
def app(served):
    for s in served:  # each test starts with empty prime caches
        s.cache = PrimeCache(Limits().cache_size)
    return server.create_app(served, Limits(max_length=500, max_samples=4, max_request_bytes=4096))


LOCAL = "http://127.0.0.1:8000"  # TestClient's own default, testserver, is not a name this server answers


@pytest.fixture
def client(app):
    return TestClient(app, base_url=LOCAL)


def text_model(served):
    return next(s for s in served if s.model.kind == "text")


def events(body: str) -> list[tuple[str, dict]]:
    """Parse a Server-Sent Events body into (event name, data) pairs."""
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# -- GET /api/models ------------------------------------------------------------------------


def test_models_lists_each_model_with_its_facts_and_curves(client, served, session_text_run):
    answer = client.get("/api/models").json()
    assert answer["limits"] == {"max_length": 500, "max_samples": 4, "max_prime_chars": Limits().max_prime_chars,
                                "max_seconds": 120.0}
    models = answer["models"]
    assert [m["name"] for m in models] == [s.name for s in served]
    text, music = models
    assert text["name"] == session_text_run.name and text["kind"] == "text" and music["kind"] == "midi"
    assert text["vocab_size"] == len(set(TINY_TEXT))
    assert text["parameters"] == text_model(served).model.network.num_parameters()
    rows = [json.loads(line) for line in (session_text_run / "metrics.jsonl").read_text().splitlines()]
    assert text["curves"]["train"] == [[r["step"], r["train_bits"]] for r in rows]
    assert text["best_val_bits"] == pytest.approx(min(r["val_bits"] for r in rows if r["val_bits"] is not None))


# -- POST /api/generate ---------------------------------------------------------------------


def test_generate_text_equals_the_python_api_with_the_same_seed(client, session_text_run):
    model = chargen.load(session_text_run)
    expected = model.generate("First Citizen", length=60, temperature=0.9, top_k=10, seed=5)
    request = {"prime": "First Citizen", "length": 60, "temperature": 0.9, "top_k": 10, "seed": 5}
    first = client.post("/api/generate", json=request).json()
    again = client.post("/api/generate", json=request).json()  # this time from the cached state
    assert first["samples"] == [expected] and first["prime_reused"] == 0
    assert again["samples"] == [expected] and again["prime_reused"] == len("First Citizen")
    assert first["kind"] == "text" and first["model"] == session_text_run.name


def test_generate_several_samples_and_a_stop_string(client):
    answer = client.post("/api/generate", json={"length": 80, "n": 3, "seed": 1, "stop": "\n"}).json()
    assert len(answer["samples"]) == 3
    assert all(isinstance(s, str) and "\n" not in s and len(s) <= 80 for s in answer["samples"])


def test_stream_sends_one_event_per_piece_then_done(client):
    request = {"prime": "All:\n", "length": 50, "seed": 3}
    whole = client.post("/api/generate", json=request).json()["samples"][0]
    response = client.post("/api/generate", json={**request, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    received = events(response.text)
    names = [name for name, _ in received]
    assert names == ["piece"] * (len(names) - 1) + ["done"] and len(names) > 1
    pieces = "".join(data["text"] for name, data in received if name == "piece")
    assert pieces == received[-1][1]["text"] == whole and len(whole) == 50


def test_music_answers_with_playable_midi_its_duration_notes_and_roll(client, served):
    music = next(s for s in served if s.model.kind == "midi")
    answer = client.post("/api/generate", json={"model": music.name, "length": 300, "seed": 2, "n": 2}).json()
    assert answer["kind"] == "midi" and len(answer["samples"]) == 2
    for sample in answer["samples"]:
        song = mido.MidiFile(file=io.BytesIO(base64.b64decode(sample["midi"])))
        notes = [m for t in song.tracks for m in t if m.type == "note_on" and m.velocity > 0]
        assert sample["notes"] == len(notes) == len(sample["roll"]) > 0
        assert sample["seconds"] == pytest.approx(song.length, abs=1e-3)
        start, end, pitch, velocity, program, is_drum = sample["roll"][0]
        assert 0 <= start <= end and 0 <= pitch <= 127 and isinstance(is_drum, bool)


# -- continuing a MIDI file sent in the request ----------------------------------------------

PRIME_FILE = ROOT / "tests" / "data" / "midi" / "bach_chorale_bwv113_8.mid"  # 3.3 KB: 4.5 KB in base64


def music_model(served):
    return next(s for s in served if s.model.kind == "midi")


def encoded(path_or_bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return base64.b64encode(data).decode("ascii")


def first_notes(mid: mido.MidiFile, count: int) -> list[tuple[float, int]]:
    """(onset in seconds, pitch) of a file's first notes, read with mido alone (not chargen's reader)."""
    onsets, now = [], 0.0
    for msg in mid:  # iterating a MidiFile merges the tracks and gives delta times in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            onsets.append((round(now, 2), msg.note))
    return sorted(onsets)[:count]


def test_music_continues_a_midi_file_sent_in_base64_and_keeps_it_off_the_disk(served, monkeypatch):
    """The written piece begins with the prime's notes (as mido reads the file) and ends within
    `seconds` of new music; the upload is read in memory: nothing is opened for writing."""
    from chargen.music import midifile

    music = music_model(served)
    app = server.create_app(served, Limits(max_request_bytes=16_384))
    opened = []
    real_open = open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            opened.append(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", watching_open)
    monkeypatch.setattr(midifile, "read_midi", lambda path: pytest.fail(f"read a MIDI file from disk: {path}"))
    body = {"model": music.name, "prime_midi": encoded(PRIME_FILE), "prime_seconds": 4, "seconds": 3, "seed": 5}
    answer = TestClient(app, base_url=LOCAL).post("/api/generate", json=body).json()
    assert not opened
    monkeypatch.undo()
    assert answer["kind"] == "midi" and 3.5 < answer["prime_end"] <= 4.0
    song = mido.MidiFile(file=io.BytesIO(base64.b64decode(answer["samples"][0]["midi"])))
    prime = mido.MidiFile(PRIME_FILE)
    in_prime = sum(1 for onset, _ in first_notes(prime, 1000) if onset < answer["prime_end"] - 0.01)
    assert in_prime > 10
    written = first_notes(song, in_prime)
    # Same notes, same order; times within the tempo bins' rounding (under 2%).
    assert [p for _, p in written] == [p for _, p in first_notes(prime, in_prime)]
    assert [t for t, _ in written] == pytest.approx([t for t, _ in first_notes(prime, in_prime)], rel=0.02, abs=0.02)
    assert answer["samples"][0]["seconds"] <= answer["prime_end"] + 3 + 0.25 + 0.05
    # The same request through the Python API, with the file's path: the same piece.
    again = music.model.generate(str(PRIME_FILE), prime_seconds=4, seconds=3, seed=5)
    buffer = io.BytesIO()
    again.save(file=buffer)
    assert base64.b64decode(answer["samples"][0]["midi"]) == buffer.getvalue()


def test_length_0_returns_the_prime_as_the_model_hears_it(client, served):
    music = music_model(served)
    scale = ROOT / "tests" / "data" / "midi" / "tiny_c_major_scale.mid"
    answer = client.post("/api/generate", json={"model": music.name, "prime_midi": encoded(scale), "length": 0}).json()
    roll = answer["samples"][0]["roll"]
    assert [note[2] for note in roll] == [60, 62, 64, 65, 67, 69, 71, 72]
    assert answer["prime_end"] == pytest.approx(3.5)  # the last onset: the scale's 8 quarter notes at 120 BPM


@pytest.mark.parametrize("prime_midi, words", [
    ("not base64!", "prime_midi is not base64"),
    (encoded(b"just some text, not music"), "prime_midi: not a midi file (no MThd header)"),
    (encoded(PRIME_FILE.read_bytes()[:600]), "prime_midi: corrupt or truncated midi file"),
    (encoded(b""), "prime_midi: empty file"),
    (12, "prime_midi must be a string: a MIDI file in base64"),
])
def test_bad_midi_primes_are_a_400_naming_the_problem(client, served, prime_midi, words):
    response = client.post("/api/generate", json={"model": music_model(served).name, "prime_midi": prime_midi})
    assert response.status_code == 400 and words in response.json()["error"], response.json()


def test_a_midi_file_without_notes_is_refused_and_a_text_model_takes_none(client, served):
    silent = mido.MidiFile()
    silent.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    buffer = io.BytesIO()
    silent.save(file=buffer)
    response = client.post("/api/generate", json={"model": music_model(served).name,
                                                   "prime_midi": encoded(buffer.getvalue())})
    assert response.status_code == 400 and response.json()["error"] == "prime_midi: no notes"
    for field in ({"prime_midi": encoded(buffer.getvalue())}, {"prime_seconds": 3}):
        response = client.post("/api/generate", json={"model": text_model(served).name, **field})
        assert response.status_code == 400 and "is for music models" in response.json()["error"]


def test_a_midi_prime_counts_against_the_request_size_limit(client, served):
    response = client.post("/api/generate", json={"model": music_model(served).name, "prime_midi": encoded(PRIME_FILE)})
    assert response.status_code == 413 and "limit is 4,096" in response.json()["error"]


# -- hidden-state reuse ---------------------------------------------------------------------


def test_a_prime_that_extends_a_recent_one_feeds_only_its_new_characters(client, served, monkeypatch):
    text = text_model(served)
    fed = []
    real = text.model.prime_state

    def counting(new_text, state=None):
        fed.append(len(new_text))
        return real(new_text, state=state)

    monkeypatch.setattr(text.model, "prime_state", counting)
    story = TINY_TEXT[:300]
    reused = []
    for end in (100, 200, 300, 300):  # a writer's text growing, then the same request again
        answer = client.post("/api/generate", json={"prime": story[:end], "length": 0}).json()
        reused.append(answer["prime_reused"])
    assert fed == [100, 100, 100] and reused == [0, 100, 200, 300]
    client.post("/api/generate", json={"prime": "All:", "length": 0})  # unrelated: read whole
    assert fed[-1] == len("All:")

    # After answering, the server reads what it wrote, so "continue" (prime + text) feeds nothing new.
    fed.clear()
    streamed = events(client.post("/api/generate", json={"prime": "All:", "length": 30, "stream": True}).text)
    text = streamed[-1][1]["text"]
    assert fed == [30]  # the 30 new characters, read once the answer was sent
    answer = client.post("/api/generate", json={"prime": "All:" + text, "length": 10}).json()
    assert answer["prime_reused"] == len("All:" + text) and fed == [30, 10]


def test_continuing_from_a_cached_state_equals_reading_the_whole_text(client, session_text_run):
    model = chargen.load(session_text_run)
    story = TINY_TEXT[:240]
    written = client.post("/api/generate", json={"prime": story[:120], "length": 1}).json()["samples"][0]
    answer = client.post("/api/generate", json={"prime": story, "length": 40, "seed": 9}).json()
    # The server also kept the state after the character it wrote: when that character
    # happens to be the story's next one, the reused prefix is one longer.
    assert answer["prime_reused"] == (121 if written == story[120] else 120)
    assert answer["samples"] == [model.generate(story, length=40, seed=9)]


def test_prime_cache_keeps_the_longest_prefix_and_forgets_the_least_recent():
    cache = PrimeCache(capacity=2)
    cache.put("ab", "state-ab")
    cache.put("abcd", "state-abcd")
    assert cache.longest_prefix("abcdef") == ("abcd", "state-abcd")
    assert cache.longest_prefix("abx") == ("ab", "state-ab")  # "ab" is now the most recent
    cache.put("zz", "state-zz")  # evicts "abcd", the least recently used
    assert len(cache) == 2 and cache.longest_prefix("abcdef") == ("ab", "state-ab")
    assert cache.longest_prefix("q") == ("", None)


# -- GET /generate (robinsloan/torch-rnn-server) --------------------------------------------


def test_torch_rnn_server_query_answers_short_completions(client):
    response = client.get("/generate", params={"start_text": "First Citizen:\nBefore we", "n": 3})
    answer = response.json()
    assert set(answer) == {"start_text", "completions", "time"}
    assert answer["start_text"] == "First Citizen:\nBefore we" and isinstance(answer["time"], float)
    assert len(answer["completions"]) == 3
    for completion in answer["completions"]:
        assert "\n" not in completion and len(completion) <= serving.COMPLETION_CHARS
        assert completion == completion.rstrip()


@pytest.mark.parametrize("text, expected", [
    (" speak, speak. You are all", " speak, speak."),
    (" we proceed any further? hear", " we proceed any further?"),
    (' said "stop!" and left', ' said "stop!"'),
    (" no end in sight but wor", " no end in sight but"),
    (" a line\nand another.", " a line"),
    ("unbroken", "unbroken"),
    ("", ""),
])
def test_completions_end_at_a_sentence_or_word_boundary(text, expected):
    assert serving.cut_at_boundary(text) == expected


# -- errors: a 4xx JSON object naming the problem, never a 500 -------------------------------


@pytest.mark.parametrize("body, status, words", [
    ({"model": "nope"}, 404, "unknown model 'nope'"),
    ({"prime": "First ☃ Citizen"}, 400, "vocabulary lacks: '☃'"),
    ({"length": 501}, 400, "length must be an integer between 0 and 500"),
    ({"length": -1}, 400, "length must be an integer between 0 and 500"),
    ({"length": "ten"}, 400, "length must be an integer"),
    ({"length": 2.5}, 400, "length must be an integer"),
    ({"temperature": -0.1}, 400, "temperature must be a finite number >= 0"),
    ({"temperature": True}, 400, "temperature must be a finite number"),
    ({"top_k": 0}, 400, "top_k must be an integer >= 1"),
    ({"top_p": 0}, 400, "top_p must be a number in (0, 1]"),
    ({"top_p": 1.5}, 400, "top_p must be a number in (0, 1]"),
    ({"n": 0}, 400, "n must be an integer between 1 and 4"),
    ({"n": 5}, 400, "n must be an integer between 1 and 4"),
    ({"seed": -1}, 400, "seed must be an integer >= 0"),
    ({"stream": "yes"}, 400, "stream must be true or false"),
    ({"stream": True, "n": 2}, 400, "stream works with n = 1"),
    ({"prime": 42}, 400, "prime must be a string"),
    ({"stop": "x" * 201}, 400, "stop must be at most"),
    ({"seconds": 10}, 400, "seconds is for music models"),
    ({"temprature": 1}, 400, "unknown field 'temprature'"),
    ([1, 2], 400, "must be a JSON object"),
])
def test_bad_generate_requests_get_a_4xx_naming_the_problem(client, body, status, words):
    response = client.post("/api/generate", json=body)
    assert response.status_code == status and words in response.json()["error"]


@pytest.mark.parametrize("body, words", [
    ({"prime": "First"}, "continues a MIDI file: send it in base64 as prime_midi"),
    ({"stream": True}, "stream is for text models"),
    ({"seconds": 0}, "seconds must be a number in (0, 120]"),
])
def test_bad_music_requests(client, served, body, words):
    music = next(s for s in served if s.model.kind == "midi")
    response = client.post("/api/generate", json={"model": music.name, **body})
    assert response.status_code == 400 and words in response.json()["error"]


def test_malformed_json_and_too_large_bodies(client):
    bad = client.post("/api/generate", content=b'{"prime": "a",', headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("malformed JSON")
    binary = client.post("/api/generate", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert binary.status_code == 400 and "not UTF-8" in binary.json()["error"]
    large = client.post("/api/generate", json={"prime": "a" * 5000})
    assert large.status_code == 413 and "limit is 4,096" in large.json()["error"]

    def chunks():  # no Content-Length: refused while reading, not after
        for _ in range(10):
            yield b" " * 1000

    chunked = client.post("/api/generate", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and "over the limit" in chunked.json()["error"]


@pytest.mark.parametrize("params, status, words", [
    ({"start_text": "x", "n": "abc"}, 400, "n must be a number"),
    ({"start_text": "x", "n": "0"}, 400, "n must be an integer between 1 and 4"),
    ({"start_text": "x", "n": "11"}, 400, "n must be an integer between 1 and 4"),
    ({"start_text": "x", "temperature": "-1"}, 400, "temperature must be a finite number >= 0"),
    ({"start_text": "x", "model": "nope"}, 404, "unknown model"),
    ({"start_text": "\u2603"}, 400, "start_text has characters"),
    ({"start_text": "x", "path": "/etc/passwd"}, 400, "unknown parameter 'path'"),
])
def test_bad_completion_queries(client, params, status, words):
    response = client.get("/generate", params=params)
    assert response.status_code == status and words in response.json()["error"]


def test_completions_refuse_a_music_model(client, served):
    music = next(s for s in served if s.model.kind == "midi")
    response = client.get("/generate", params={"start_text": "", "model": music.name})
    assert response.status_code == 400 and "writes music" in response.json()["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/api/generate", 405),
    ("DELETE", "/api/models", 405),
    ("GET", "/nowhere", 404),
])
def test_unknown_pages_and_methods_are_json_errors(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status and "error" in response.json()


@pytest.mark.parametrize("raw_path, words", [
    (b"/studio/..", "no studio file '..'"),  # the app's own check of a studio file's name
    (b"/studio/%2E%2E", "no studio file '..'"),
    (b"/studio/secret.txt", "no studio file 'secret.txt'"),
    (b"/studio/app.js%00", "no studio file 'app.js\\x00'"),
    (b"/studio/../app.py", "no such page: /studio/../app.py"),  # the router: a name holds no slash
    (b"/studio/..%2Fapp.py", "no such page: /studio/../app.py"),
])
def test_paths_outside_the_studio_are_json_errors_as_sent(app, raw_path, words):
    """Issue 20: an HTTP client removes `..` before sending, so a test through one never reached
    the app's own checks; here the path goes to the app as a server receives it, unchanged."""
    status, body = asyncio.run(_raw_get(app, raw_path))
    assert status == 404 and words in json.loads(body)["error"]
    assert b"def create_app" not in body and b"import" not in body


async def _raw_get(app, raw_path: bytes) -> tuple[int, bytes]:
    """GET raw_path straight into the ASGI app, with the path decoded as uvicorn decodes it."""
    from urllib.parse import unquote

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": unquote(raw_path.decode("ascii")), "raw_path": raw_path, "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    answer = {"body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


def test_no_request_makes_the_server_open_a_file(client, tmp_path, monkeypatch):
    """A prime that happens to name a file is text, never a path to look at."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "First").write_text("not for the network")  # a name made of the model's characters
    opened, watching = [], [True]

    def audit(event, args):  # audit hooks cannot be removed: this one goes quiet after the test
        if watching[0] and event in ("open", "os.listdir", "os.scandir", "os.remove", "os.rename") and args:
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    try:
        assert client.post("/api/generate", json={"prime": "First", "length": 5}).status_code == 200
        assert client.post("/api/generate", json={"prime": "First", "length": 5, "stream": True}).status_code == 200
        assert client.get("/generate", params={"start_text": "First"}).status_code == 200
    finally:
        watching[0] = False
    assert not [path for path in opened if path == "First" or path.startswith(str(tmp_path))], opened


def test_limits_are_configurable(served):
    client = TestClient(server.create_app(served, Limits(max_length=10, max_samples=1)), base_url=LOCAL)
    assert client.post("/api/generate", json={"length": 10}).status_code == 200
    assert client.post("/api/generate", json={"length": 11}).status_code == 400
    assert client.post("/api/generate", json={"length": 1, "n": 2}).status_code == 400


# -- two requests at once ---------------------------------------------------------------------


def test_two_interleaved_streams_each_get_their_own_text(app):
    """Stream A is held after its first piece while stream B runs start to end; neither is disturbed."""
    a = {"prime": "First Citizen:\n", "length": 120, "seed": 11, "stream": True}
    b = {"prime": "All:\n", "length": 120, "seed": 12, "stream": True}
    reference = {k: "".join(d["text"] for n, d in events(_call(app, body)) if n == "piece") for k, body in (("a", a), ("b", b))}

    async def both():
        release = asyncio.Event()
        first_piece = asyncio.Event()

        async def on_chunk_a(count):
            if count == 1:
                first_piece.set()
                await release.wait()  # A is now mid-generation, its hidden state in flight

        task_a = asyncio.ensure_future(_request(app, a, on_chunk_a))
        await first_piece.wait()
        body_b = await _request(app, b, None)
        assert not task_a.done()
        release.set()
        return await task_a, body_b

    body_a, body_b = asyncio.run(both())
    for key, body in (("a", body_a), ("b", body_b)):
        received = events(body)
        assert received[-1][0] == "done" and received[-1][1]["text"] == reference[key]
    assert reference["a"] != reference["b"]


def _call(app, body) -> str:
    return asyncio.run(_request(app, body, None))


async def _request(app, body: dict, on_chunk) -> str:
    """POST /api/generate straight into the ASGI app, so the test controls when each chunk is taken."""
    payload = json.dumps(body).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/generate", "raw_path": b"/api/generate",
             "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves

    chunks = []

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            if on_chunk is not None:
                await on_chunk(len(chunks))

    await app(scope, receive, send)
    return b"".join(chunks).decode()


# -- the studio's files -------------------------------------------------------------------------


def test_studio_page_and_assets_are_served_from_the_package_without_network_urls(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in server.STUDIO_FILES:
        asset = client.get("/" if name == "index.html" else f"/studio/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text and "https://" not in asset.text, f"{name} refers to the network"
        if name != "index.html":
            assert f"/studio/{name}" in page.text


# -- chargen serve on the command line ----------------------------------------------------------


def test_serve_without_the_extra_names_the_pip_command(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from chargen.cli import cli

    for missing in ("uvicorn", "starlette"):
        with monkeypatch.context() as m:
            for name in [n for n in sys.modules if n.split(".")[0] == missing or n.startswith("chargen.serve")]:
                m.delitem(sys.modules, name)
            m.delattr(chargen, "serve")  # else `from chargen.serve import app` finds the loaded package
            m.setitem(sys.modules, missing, None)  # importing it now fails as if it were not installed
            # (a run that does not exist: had the import check passed, this would be the error)
            result = CliRunner().invoke(cli, ["serve", str(tmp_path / "no-run")])
        assert result.exit_code == 1
        assert result.stderr == "Error: chargen serve needs the serve extra: pip install 'chargen[serve]'\n"


def test_serve_warns_when_other_machines_can_reach_it(session_text_run, monkeypatch):
    from click.testing import CliRunner

    from chargen.cli import cli

    served, real_listen = [], server.listen
    monkeypatch.setattr(server, "listen", lambda host, port: real_listen("127.0.0.1", 0))  # never really expose it
    monkeypatch.setattr(server, "serve", lambda app, sock: served.append(sock) or sock.close())
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)):
        result = CliRunner().invoke(cli, ["serve", str(session_text_run), "--host", host])
        assert result.exit_code == 0, result.output
        assert ("other machines can reach this server" in result.stderr) == warned
    assert len(served) == 3


def test_serve_refuses_a_missing_run_and_a_busy_port(session_text_run, tmp_path):
    busy = server.listen("127.0.0.1", 0)
    try:
        for args, message in (
            ([str(tmp_path / "nowhere")], "no such checkpoint"),
            ([str(session_text_run), "--port", str(busy.getsockname()[1])], "cannot listen on 127.0.0.1:"),
        ):
            result = subprocess.run([sys.executable, "-m", "chargen", "serve", *args], capture_output=True,
                                    text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
            assert result.returncode == 1 and "Traceback" not in result.stderr
            assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    finally:
        busy.close()


@pytest.mark.slow
def test_serve_answers_then_stops_cleanly_on_ctrl_c(session_text_run):
    process = subprocess.Popen([sys.executable, "-m", "chargen", "serve", str(session_text_run), "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                               preexec_fn=as_from_a_terminal())
    try:
        lines = []
        for line in process.stderr:  # wait for the address it printed
            lines.append(line)
            if "serving at http://" in line:
                break
        url = line.split("serving at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "api/models", timeout=60) as response:
            assert json.load(response)["models"][0]["name"] == session_text_run.name
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "Stopped." in rest and "Traceback" not in "".join(lines) + rest


@pytest.mark.slow
def test_a_built_wheel_ships_the_studio(tmp_path):
    """The studio is package data: a non-editable install has every file the server reads."""
    pytest.importorskip("setuptools", reason="building a wheel without network needs setuptools installed")
    import shutil
    import zipfile

    source = tmp_path / "source"
    shutil.copytree(ROOT / "chargen", source / "chargen", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                             "-q", "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheel").glob("chargen-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"chargen/serve/studio/{name}" for name in server.STUDIO_FILES} <= shipped
    assert {"chargen/serve/app.py", "chargen/serve/requests.py", "chargen/serve/primecache.py"} <= shipped


def test_serve_option_defaults_are_the_limits_defaults():
    from chargen.cli import cli

    defaults = {p.name: p.default for p in cli.commands["serve"].params}
    limits = Limits()
    for name in ("max_length", "max_samples", "max_request_bytes"):
        assert defaults[name] == getattr(limits, name), name


# -- the cost of one request, and of many ---------------------------------------------------------


def test_a_prime_is_capped_in_characters_apart_from_body_bytes(served):
    limits = Limits(max_prime_chars=100, max_request_bytes=4096)
    web = TestClient(server.create_app(served, limits), base_url=LOCAL)
    assert web.post("/api/generate", json={"prime": "a" * 100, "length": 1}).status_code == 200
    long = web.post("/api/generate", json={"prime": "a" * 101, "length": 1})
    assert long.status_code == 400 and "prime is 101 characters; the limit is 100" in long.json()["error"]
    query = web.get("/generate", params={"start_text": "a" * 101})
    assert query.status_code == 400 and "start_text is 101 characters" in query.json()["error"]


def test_max_request_bytes_bounds_a_get_query_too(served):
    """Issue 21: --max-request-bytes did not bound GET /generate?start_text=."""
    web = TestClient(server.create_app(served, Limits(max_request_bytes=1000)), base_url=LOCAL)
    response = web.get("/generate", params={"start_text": "a" * 1000})
    assert response.status_code == 414 and "the limit is 1,000" in response.json()["error"]


def test_a_long_prime_is_read_a_window_at_a_time_the_lock_free_between(client, served, monkeypatch):
    """Issue 21: a 65,536-character prime was read in one forward pass holding the model's lock
    (57 s, +935 MiB): now in windows, so memory stays bounded and other requests go on between."""
    text = text_model(served)
    windows, real = [], text.model.prime_state

    def watching(new_text, state=None):
        assert text.lock.locked(), "a window is read under the lock"
        windows.append(len(new_text))
        return real(new_text, state=state)

    monkeypatch.setattr(text.model, "prime_state", watching)
    acquisitions, real_lock = [], text.lock

    class CountingLock:
        def __enter__(self):
            acquisitions.append(1)
            return real_lock.__enter__()

        def __exit__(self, *exc):
            return real_lock.__exit__(*exc)

        def locked(self):
            return real_lock.locked()

    monkeypatch.setattr(text, "lock", CountingLock())
    prime = (TINY_TEXT * 3)[:1000]
    answer = client.post("/api/generate", json={"prime": prime, "length": 0})
    assert answer.status_code == 200
    assert sum(windows) == 1000 and max(windows) <= serving.PRIME_WINDOW_CHARS and len(windows) >= 4
    assert len(acquisitions) >= len(windows) + 1  # one per window, then the generation's own


def test_prime_windows_are_cut_before_ascii_and_join_to_the_text():
    text = "ab" + "e\u0301" * 10 + " cd" * 50
    for size in (1, 3, 7, 64):
        pieces = list(serving.windows(text, size))
        assert "".join(pieces) == text
        assert all(not piece[0] == "\u0301" for piece in pieces)


def test_past_its_queue_a_model_answers_503_with_retry_after(served):
    """Issue 21: queued requests held worker threads inside the model's lock, without bound."""
    limits = Limits(max_queue=1)
    app = server.create_app(served, limits)
    text = text_model(served)

    async def scenario():
        release, first_piece = asyncio.Event(), asyncio.Event()

        async def hold(count):
            if count == 1:
                first_piece.set()
                await release.wait()  # stream A is in progress, its place in the queue taken

        stream = asyncio.ensure_future(_request(app, {"prime": "All:", "length": 100, "stream": True}, hold))
        await first_piece.wait()
        refused = await _request_with_status(app, {"length": 5})
        assert text.in_progress == 1
        release.set()
        await stream
        after = await _request_with_status(app, {"length": 5})
        return refused, after

    refused, after = asyncio.run(scenario())
    status, headers, body = refused
    assert status == 503 and headers.get(b"retry-after") == b"2"
    assert "is busy: 1 requests are in progress" in json.loads(body)["error"]
    assert after[0] == 200 and text.in_progress == 0


def test_a_stream_whose_client_leaves_gives_back_its_place(served):
    app = server.create_app(served, Limits(max_queue=1))
    text = text_model(served)

    async def leave_after_first_piece():
        scope = _scope("/api/generate")
        sent, payload = [], json.dumps({"prime": "All:", "length": 2000, "stream": True}).encode()
        messages = [{"type": "http.request", "body": payload, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            while not sent:
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}  # gone after the first piece

        async def send(message):
            if message["type"] == "http.response.body" and message.get("body"):
                sent.append(message["body"])

        await app(scope, receive, send)

    asyncio.run(leave_after_first_piece())
    assert text.in_progress == 0
    assert TestClient(app, base_url=LOCAL).post("/api/generate", json={"length": 3}).status_code == 200


def test_a_body_that_never_arrives_times_out_with_408(served):
    """Issue 21: a body shorter than its Content-Length held the connection open forever."""
    app = server.create_app(served, Limits(body_seconds=0.2))

    async def send_half():
        answer = {}

        async def receive():
            if "sent" not in answer:
                answer["sent"] = True
                return {"type": "http.request", "body": b'{"prime": ', "more_body": True}
            await asyncio.Event().wait()  # the rest never comes

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] = answer.get("body", b"") + message.get("body", b"")

        scope = _scope("/api/generate", extra_headers=[(b"content-length", b"100")])
        await asyncio.wait_for(app(scope, receive, send), timeout=30)
        return answer

    answer = asyncio.run(send_half())
    assert answer["status"] == 408 and "did not arrive within 0.2 s" in json.loads(answer["body"])["error"]


# -- what another client's text looks like: nothing ----------------------------------------------


def test_prime_reused_never_tells_one_client_about_anothers_text(app):
    """Issue 21: `prime_reused` confirmed a guess of another client's text ("My word is swordfish
    and" reused 24 characters, a wrong guess 0). Each client's cached texts are its own."""
    secret = "First Citizen:\nBefore we"
    alice = TestClient(app, base_url=LOCAL, client=("10.0.0.1", 40000))
    mallory = TestClient(app, base_url=LOCAL, client=("10.0.0.2", 40000))
    assert alice.post("/api/generate", json={"prime": secret, "length": 1}).json()["prime_reused"] == 0
    guess = mallory.post("/api/generate", json={"prime": secret + " proceed", "length": 1}).json()
    assert guess["prime_reused"] == 0
    assert mallory.post("/api/generate", json={"prime": secret + " proceed", "length": 1}).json()["prime_reused"] \
        == len(secret + " proceed")  # its own text, the second time
    assert alice.post("/api/generate", json={"prime": secret + " proceed", "length": 1}).json()["prime_reused"] \
        == len(secret)


# -- every bad request is a 4xx naming the problem -------------------------------------------------


@pytest.mark.parametrize("field", ["temperature", "top_p", "top_k", "length", "seed", "n"])
def test_a_400_digit_number_is_a_400(client, field):
    """Issue 21: a 400-digit integer for temperature or top_p answered 500 (OverflowError)."""
    body = ('{"%s": %s}' % (field, "9" * 400)).encode()
    response = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and field in response.json()["error"]


def test_deeply_nested_json_is_a_400_not_a_traceback(client):
    """Issue 21: `[` x 100,000 answered 500 (RecursionError) and logged a traceback (4,000 fit this
    test's body limit and recurse as deep as Python allows)."""
    response = client.post("/api/generate", content=b"[" * 4000, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested too deeply" in response.json()["error"]


def test_stop_on_a_music_model_is_refused_not_ignored(client, served):
    music = next(s for s in served if s.model.kind == "midi")
    response = client.post("/api/generate", json={"model": music.name, "stop": "x"})
    assert response.status_code == 400 and "stop is for text models" in response.json()["error"]


# -- shutting down -----------------------------------------------------------------------------------


def test_a_stream_in_progress_ends_with_an_error_event_when_the_server_is_stopping(app):
    async def stop_after_first_piece():
        async def on_chunk(count):
            if count == 1:
                app.state.stopping.set()  # what serve() does on Ctrl-C or SIGTERM

        return await _request(app, {"prime": "All:", "length": 500, "stream": True}, on_chunk)

    try:
        received = events(asyncio.run(stop_after_first_piece()))
    finally:
        app.state.stopping.clear()
    assert received[0][0] == "piece" and received[-1] == ("error", {"error": "the server is shutting down; "
                                                                              "this stream ends here"})
    assert len("".join(d["text"] for n, d in received if n == "piece")) < 500


@pytest.mark.slow
def test_sigterm_ends_a_live_stream_with_an_error_event(session_text_run):
    """Issue 21: SIGTERM during streams cut them without an `event: error`."""
    process = subprocess.Popen([sys.executable, "-m", "chargen", "serve", str(session_text_run), "--port", "0",
                                "--max-length", "1000000"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=as_from_a_terminal())
    try:
        for line in process.stderr:
            if "serving at http://" in line:
                break
        url = line.split("serving at ", 1)[1].split()[0]
        request = urllib.request.Request(url + "api/generate", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"length": 1000000, "stream": True}).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            first = response.readline()
            assert first.startswith(b"event: piece")
            process.send_signal(signal.SIGTERM)
            rest = response.read().decode()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert events(rest.split("\n\n", 1)[1])[-1] == ("error", {"error": "the server is shutting down; "
                                                                     "this stream ends here"})


def _scope(path: str, extra_headers=()) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"content-type", b"application/json"), *extra_headers],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


async def _request_with_status(app, body: dict) -> tuple[int, dict, bytes]:
    """POST /api/generate straight into the ASGI app: (status, headers, body)."""
    payload, answer = json.dumps(body).encode(), {"body": b""}

    async def receive():
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"], answer["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(_scope("/api/generate"), receive, send)
    return answer["status"], answer["headers"], answer["body"]


def test_a_crlf_prime_is_read_with_the_corpus_line_endings(client, session_text_run):
    """Issue 21: a CRLF prime (a text pasted from Windows) was refused by a model whose corpus's
    line endings were normalized."""
    model = chargen.load(session_text_run)
    answer = client.post("/api/generate", json={"prime": "All:\r\nSpeak", "length": 30, "seed": 4})
    assert answer.status_code == 200 and answer.json()["samples"] == [model.generate("All:\nSpeak", length=30, seed=4)]
    query = client.get("/generate", params={"start_text": "All:\r\nSpeak", "n": 1})
    assert query.status_code == 200 and query.json()["start_text"] == "All:\r\nSpeak"
