"""The studio end to end in a real headless Chromium (Debian's chromium and chromium-driver).

A live uvicorn server on a free port serves the session's tiny text and music
models; selenium drives the system browser through /usr/bin/chromedriver (never
a downloaded one). Without a browser the tests skip, unless CHARGEN_REQUIRE_BROWSER=1
(CI sets it), where they fail. CHARGEN_STUDIO_SCREENSHOT=path saves a screenshot
of the studio there (bench/studio_screenshots.py takes the docs/ screenshots from real models).
"""

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

import chargen

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 60  # an upper bound for slow, shared machines; every wait ends on an observable event

pytestmark = pytest.mark.slow


def _missing() -> list[str]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    for module in ("selenium", "starlette", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {module}")
    return missing


@pytest.fixture(scope="module")
def require_browser():
    """Skip (or, with CHARGEN_REQUIRE_BROWSER=1, fail) before any model is trained when the browser is absent."""
    missing = _missing()
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CHARGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CHARGEN_REQUIRE_BROWSER=1, but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def live_server(require_browser, session_text_run, session_music_run):
    """`chargen serve` on a free port, in a thread of this process."""
    with _serving([session_text_run, session_music_run]) as served:
        yield served


@contextlib.contextmanager
def _serving(runs):
    """(address, {kind: served model}) of `chargen serve RUN...` on a free port, in a thread."""
    import uvicorn

    from chargen.serve import app as server
    from chargen.serve import models as serving
    from chargen.serve.requests import Limits

    limits = Limits()
    app = server.create_app(serving.load_models([str(run) for run in runs], limits), limits)
    sock = server.listen("127.0.0.1", 0)
    live = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=live.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait(lambda: live.started, "the server to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", {s.model.kind: s for s in app.state.models}
    finally:
        live.should_exit = True
        thread.join(timeout=WAIT_S)


@pytest.fixture
def browser(live_server, tmp_path):
    with start_chromium(live_server[0], tmp_path) as driver:
        yield driver


@contextlib.contextmanager
def start_chromium(url: str, tmp_path: Path):
    """Headless Chromium with a fresh profile in tmp_path, on the studio at `url`, once it is ready."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then never runs selenium-manager to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(url + "/")
        _wait(lambda: driver.find_element("tag name", "body").get_attribute("data-status") == "ready", "the page")
        yield driver
    finally:
        driver.quit()


def _wait(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _status(driver) -> str:
    return driver.find_element("tag name", "body").get_attribute("data-status")


def _errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _set(driver, element_id: str, value) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(str(value))


def test_text_streams_in_and_continues(browser, live_server, session_text_run, monkeypatch):
    from chargen.serve import models as serving

    model = chargen.load(session_text_run)
    _set(browser, "prime", "First")
    _set(browser, "length", 60)
    _set(browser, "seed", 4)
    # Hold the server's stream after 10 pieces, sent one by one, until the page has shown them:
    # the text appears as it is generated, not when the whole sample is done.
    text_model, gate = live_server[1]["text"].model, threading.Event()
    real_stream = text_model.stream

    def held_stream(*args, **kwargs):
        for i, piece in enumerate(real_stream(*args, **kwargs)):
            if i == 10:
                gate.wait(WAIT_S)
            yield piece

    monkeypatch.setattr(text_model, "stream", held_stream)
    monkeypatch.setattr(serving, "STREAM_BATCH_SECONDS", 0)
    try:
        browser.find_element("id", "generate").click()
        _wait(lambda: len(browser.find_element("id", "output-new").get_attribute("textContent")) == 10
              and _status(browser) == "streaming", "the first 10 characters")
    finally:
        gate.set()
    _wait(lambda: _status(browser) in ("done", "error"), "the text")
    assert _status(browser) == "done", browser.find_element("id", "status").text
    first = browser.find_element("id", "output-new").get_attribute("textContent")
    assert first == model.generate("First", length=60, temperature=0.8, seed=4)

    browser.find_element("id", "continue").click()
    _wait(lambda: _status(browser) in ("done", "error") and browser.find_element("id", "generate").is_enabled(),
          "the continuation")
    assert _status(browser) == "done", browser.find_element("id", "status").text
    assert browser.find_element("id", "output-prime").get_attribute("textContent") == "First" + first
    more = browser.find_element("id", "output-new").get_attribute("textContent")
    # Continue offsets a fixed seed by the text's length, so it does not replay the same draws.
    assert more == model.generate("First" + first, length=60, temperature=0.8, seed=4 + len("First" + first))
    # The server read what it wrote after answering: the continuation fed none of the 65 again.
    assert "65 characters of prime reused" in browser.find_element("id", "status").text

    loss_pixels = _painted_pixels(browser, "loss")
    assert loss_pixels > 500, "the loss chart is empty"
    screenshot = os.environ.get("CHARGEN_STUDIO_SCREENSHOT")
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(screenshot)
    assert _errors(browser) == []


def test_music_piano_roll_play_and_download(browser, live_server, session_music_run):
    from selenium.webdriver.support.ui import Select

    from chargen.music import midifile as midi
    from chargen.serve.requests import Limits

    # A barely trained model often ends its piece at once: take the first seed whose piece
    # has pitched notes and drums, so that both voices of the synthesizer are heard.
    model = chargen.load(session_music_run)

    def voices(seed):  # as the studio asks: 10 s of music, at most the server's length
        song = model.generate(length=Limits().max_length, seconds=10, temperature=0.8, seed=seed)
        return {n.is_drum for n in midi.piano_roll(song)}

    seed = next(s for s in range(100) if voices(s) == {True, False})
    Select(browser.find_element("id", "model")).select_by_value(live_server[1]["midi"].name)
    assert not browser.find_element("id", "length").is_displayed()  # music is measured in seconds
    _set(browser, "seconds", 10)
    _set(browser, "seed", seed)
    browser.find_element("id", "generate").click()
    _wait(lambda: _status(browser) in ("done", "error"), "the piece")
    assert _status(browser) == "done", browser.find_element("id", "status").text
    assert int(browser.find_element("id", "roll").get_attribute("data-notes")) > 0
    assert _painted_pixels(browser, "roll") > 100, "the piano roll is empty"
    assert browser.find_element("id", "download").get_attribute("href").startswith("blob:")

    play = browser.find_element("id", "play")
    play.click()
    assert play.get_attribute("data-playing") == "yes"
    # Play is running once the audio clock has moved past the piece's start.
    _wait(lambda: browser.execute_script(
        "return studio.player === null || studio.player.context.currentTime > studio.player.startedAt + 0.2"),
        "the audio clock")
    play.click()  # stop
    _wait(lambda: play.get_attribute("data-playing") == "done", "the player to stop")
    # Every note of the piece, drums included, through the same synthesizer, offline: it sounds.
    peak = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        ChargenSynth.render(studio.piece.roll).then(
            (buffer) => done(buffer.getChannelData(0).reduce((m, x) => Math.max(m, Math.abs(x)), 0)),
            (error) => done(String(error)));""")
    assert isinstance(peak, float) and peak > 0.01, peak
    assert _errors(browser) == []


BACH = Path(__file__).resolve().parent.parent / "data" / "bach" / "bach_bwv1_6.mid"  # shipped with chargen


def _mido_notes(data: bytes) -> list[tuple[float, int]]:
    """(onset in seconds, pitch) of every note of a MIDI file, read with mido alone, in order."""
    import io

    import mido

    onsets, now = [], 0.0
    for msg in mido.MidiFile(file=io.BytesIO(data)):  # merged tracks, delta times in seconds
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            onsets.append((now, msg.note))
    return sorted(onsets)


def _same_start(piece, prime, count):
    """The first `count` notes of `piece` are those of `prime`: pitches in order, onsets within
    the rounding of tempo bins (under 2%)."""
    assert len(piece) >= count and len(prime) >= count
    assert [p for _, p in piece[:count]] == [p for _, p in prime[:count]]
    for (a, _), (b, _) in zip(piece[:count], prime[:count]):
        assert abs(a - b) <= 0.02 + 0.02 * b, (a, b)


def _piece_bytes(driver) -> bytes:
    import base64

    return base64.b64decode(driver.execute_script("return studio.piece.midi"))


def _colour_pixels(driver, canvas_id: str, rgb: tuple[int, int, int]) -> int:
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]), [r, g, b] = arguments[1];
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] === r && data[i + 1] === g && data[i + 2] === b) n++;
        return n;""", canvas_id, list(rgb))


def test_music_continues_a_bach_prime_plays_and_downloads(browser, live_server, session_music_run):
    """The studio's whole music path: a Bach chorale picked as the prime is drawn in the prime's
    colour; Generate writes a piece that begins with the chorale's notes (as mido reads the file)
    and goes on; Continue writes one that begins with that whole piece; Play moves the play-head
    and sounds; Download gives the very file."""
    from selenium.webdriver.support.ui import Select

    # A barely trained model may end a piece at once: take a seed whose continuation adds notes.
    model = chargen.load(session_music_run)
    prime_notes = len(midi_roll(model.generate(BACH.read_bytes(), length=0, prime_seconds=5)))
    seed = next(s for s in range(50) if len(midi_roll(model.generate(
        BACH.read_bytes(), prime_seconds=5, seconds=4, length=2000, temperature=0.8, seed=s))) > prime_notes + 3)
    Select(browser.find_element("id", "model")).select_by_value(live_server[1]["midi"].name)
    assert browser.execute_script("return [pitchName(60), pitchName(69), pitchName(21)]") == ["C4", "A4", "A0"]
    _set(browser, "prime-seconds", 5)
    _set(browser, "seconds", 4)
    _set(browser, "seed", seed)
    browser.find_element("id", "prime-file").send_keys(str(BACH))
    roll = browser.find_element("id", "roll")
    _wait(lambda: browser.find_element("id", "prime-drop").get_attribute("data-prime") == "yes"
          or _status(browser) == "error", "the prime to be read")
    assert _status(browser) == "ready", browser.find_element("id", "status").text
    assert roll.get_attribute("data-notes") == roll.get_attribute("data-prime-notes") == str(prime_notes)
    assert _colour_pixels(browser, "roll", (0xA8, 0x9F, 0x8D)) > 100, "the prime is not drawn in its colour"

    browser.find_element("id", "generate").click()
    _wait(lambda: _status(browser) in ("done", "error"), "the piece")
    assert _status(browser) == "done", browser.find_element("id", "status").text
    written = _mido_notes(_piece_bytes(browser))
    prime_end = browser.execute_script("return music.primeEnd")
    # The prime ends with its last onset: its notes start before prime_end, or on it (the last chord).
    chorale = _mido_notes(BACH.read_bytes())
    in_prime = sum(1 for onset, _ in chorale if onset < prime_end - 0.01)
    assert sum(1 for onset, _ in chorale if onset <= prime_end * 1.02 + 0.02) == prime_notes > in_prime > 10
    _same_start(written, _mido_notes(BACH.read_bytes()), in_prime)
    assert len(written) > in_prime and max(t for t, _ in written) < prime_end + 4
    assert int(roll.get_attribute("data-notes")) == len(written)
    assert int(roll.get_attribute("data-prime-notes")) >= prime_notes  # new notes on the prime's last onset count too
    assert _colour_pixels(browser, "roll", (0xA8, 0x9F, 0x8D)) > 100
    assert _painted_pixels(browser, "roll") > _colour_pixels(browser, "roll", (0xA8, 0x9F, 0x8D)) + 100

    continue_button = browser.find_element("id", "continue")
    assert continue_button.is_enabled()
    continue_button.click()
    _wait(lambda: _status(browser) in ("done", "error") and browser.find_element("id", "generate").is_enabled(),
          "the continuation")
    assert _status(browser) == "done", browser.find_element("id", "status").text
    longer = _mido_notes(_piece_bytes(browser))
    # Continue's prime is the whole piece: it comes back note for note, and the model may add
    # notes to its last chord (same onset) before it moves on.
    last = written[-1][0]
    before = sum(1 for onset, _ in written if onset < last - 0.01)
    _same_start(longer, written, before)
    last_chord = sorted(p for t, p in written if t >= last - 0.01)
    now_there = [p for t, p in longer if abs(t - last) < 0.01 + 0.02 * last]
    assert all(now_there.count(p) >= last_chord.count(p) for p in last_chord), (last_chord, now_there)
    assert len(longer) > len(written)
    assert int(roll.get_attribute("data-prime-notes")) < len(written)  # the dropped file keeps its colour

    play = browser.find_element("id", "play")
    play.click()
    assert play.get_attribute("data-playing") == "yes"
    _wait(lambda: studio_playhead(browser) > 0.3, "the play-head to move")
    level = browser.execute_async_script("""
        const done = arguments[arguments.length - 1], started = performance.now();
        const buffer = new Float32Array(2048);
        let peak = 0;
        (function listen() {
            if (!studio.player) { done(peak); return; }
            studio.player.analyser.getFloatTimeDomainData(buffer);
            for (const x of buffer) peak = Math.max(peak, Math.abs(x));
            if (peak > 0.01 || performance.now() - started > 20000) done(peak);
            else setTimeout(listen, 50);
        })();""")
    assert level > 0.01, f"playback is silent (peak {level})"
    play.click()
    _wait(lambda: play.get_attribute("data-playing") == "done", "the player to stop")

    # Download saves the blob the link points to (the page's CSP lets no script fetch it back).
    assert browser.find_element("id", "download").get_attribute("href").startswith("blob:")
    downloaded = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        music.download.arrayBuffer().then((b) => done(Array.from(new Uint8Array(b))), (e) => done(String(e)));""")
    assert bytes(downloaded) == _piece_bytes(browser)
    assert _errors(browser) == []


def test_a_file_that_is_not_midi_is_refused_in_words(browser, live_server, tmp_path):
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "model")).select_by_value(live_server[1]["midi"].name)
    fake = tmp_path / "notes.mid"
    fake.write_text("these are not notes")
    browser.find_element("id", "prime-file").send_keys(str(fake))
    _wait(lambda: _status(browser) == "error", "the refusal")
    assert "prime_midi: not a midi file" in browser.find_element("id", "status").text
    assert browser.find_element("id", "prime-drop").get_attribute("data-prime") == "no"


def midi_roll(song):
    from chargen.music import midifile

    return midifile.piano_roll(song)


def studio_playhead(driver) -> float:
    value = driver.find_element("id", "roll").get_attribute("data-playhead")
    return float(value) if value else -1.0


def test_the_studio_fits_a_phone_screen(browser, live_server):
    from selenium.webdriver.support.ui import Select

    browser.set_window_size(390, 844)
    for kind, elements in (("text", ("generate", "prime", "temperature-range", "output")),
                           ("midi", ("generate", "prime-drop", "seconds-range", "roll", "play"))):
        Select(browser.find_element("id", "model")).select_by_value(live_server[1][kind].name)
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen ({kind})"
        for element_id in elements:
            box = browser.find_element("id", element_id).rect
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, f"#{element_id} does not fit"


def _painted_pixels(driver, canvas_id: str) -> int:
    """How many pixels of a canvas have been drawn on (not transparent)."""
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]);
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) painted++;
        return painted;""", canvas_id)


def test_the_studio_shows_what_real_models_write(require_browser, real_runs, tmp_path):
    """The studio serving models trained on the real corpora (those of tests/test_outcomes.py):
    from the start state, the text model's page reads as Shakespeare under the corpus's
    bigram yardstick, and the Bach model's piece is drawn with its notes.
    (bench/studio_screenshots.py takes docs/studio.png the same way.)"""
    from selenium.webdriver.support.ui import Select
    from test_outcomes import NOISE_BITS, BigramYardstick

    with _serving([real_runs["text"][1111], real_runs["music"]]) as (url, served), start_chromium(url, tmp_path) as page:
        _set(page, "length", 400)
        _set(page, "seed", 1)
        page.find_element("id", "generate").click()
        _wait(lambda: _status(page) in ("done", "error"), "the text")
        assert _status(page) == "done", page.find_element("id", "status").text
        text = page.find_element("id", "output-new").get_attribute("textContent")
        assert text == chargen.load(real_runs["text"][1111]).generate(length=400, temperature=0.8, seed=1)
        corpus = (Path(__file__).parent.parent / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
        assert BigramYardstick(corpus).bits("\n" + text) < NOISE_BITS, text
        assert _painted_pixels(page, "loss") > 500, "the loss chart is empty"

        Select(page.find_element("id", "model")).select_by_value(served["midi"].name)
        _set(page, "seconds", 20)
        page.find_element("id", "generate").click()
        _wait(lambda: _status(page) in ("done", "error"), "the piece")
        assert _status(page) == "done", page.find_element("id", "status").text
        assert int(page.find_element("id", "roll").get_attribute("data-notes")) > 20
        assert _painted_pixels(page, "roll") > 500, "the piano roll is empty"
        assert _errors(page) == []
