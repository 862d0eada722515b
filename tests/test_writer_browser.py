"""The studio's writing view in a real headless Chromium, on the session's model that has
learned some English: a suggestion appears greyed after the caret and is the API's first;
Tab, Shift-Tab, Esc and Alt-Down do what they say; and no answer is ever shown for a text
that has changed since it was asked for. The browser machinery is tests/test_studio_browser.py's.
"""

import json
import re
import threading
import urllib.request

import pytest
from test_studio_browser import WAIT_S, _errors, _wait, require_browser, start_chromium  # noqa: F401

pytestmark = pytest.mark.slow

FIRST_WORD = re.compile(r"^[^\w'’]*[\w'’]+")  # writer.js's FIRST_WORD, for an ASCII text


@pytest.fixture(scope="module")
def writing_server(require_browser, session_writer_run):
    """`chargen serve` of the writer model on a free port, in a thread of this process."""
    import uvicorn

    from chargen.serve import app as server
    from chargen.serve import models as serving
    from chargen.serve.requests import Limits

    served = serving.load_models([str(session_writer_run)], Limits())
    sock = server.listen("127.0.0.1", 0)
    live = uvicorn.Server(uvicorn.Config(server.create_app(served, Limits()), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=live.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait(lambda: live.started, "the server to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", served[0]
    live.should_exit = True
    thread.join(timeout=WAIT_S)


@pytest.fixture
def page(writing_server, tmp_path):
    url, _ = writing_server
    with start_chromium(url, tmp_path) as driver:
        driver.find_element("id", "view-write").click()
        yield driver


def api_suggestions(url: str, text: str, unit: str = "word") -> list[str]:
    request = urllib.request.Request(url + "/api/suggest", data=json.dumps({"text": text, "n": 5, "unit": unit}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
        return [s["text"] for s in json.load(answer)["suggestions"]]


def state(driver) -> str:
    return driver.find_element("id", "editor").get_attribute("data-suggestion")


def shown(driver) -> str:
    return driver.find_element("id", "suggestion").get_attribute("textContent")


def value(driver) -> str:
    return driver.execute_script("return document.getElementById('editor').value")


def test_a_suggestion_appears_and_tab_takes_it(page, writing_server):
    from selenium.webdriver.common.keys import Keys

    url, _ = writing_server
    editor = page.find_element("id", "editor")
    assert page.switch_to.active_element == editor  # the view opens ready to type
    editor.send_keys("First Citizen:\nWe are")
    _wait(lambda: state(page) == "shown", "a suggestion")
    assert shown(page) == api_suggestions(url, "First Citizen:\nWe are")[0]
    assert page.find_element("id", "ghost-text").get_attribute("textContent") == value(page)

    suggestion = shown(page)
    editor.send_keys(Keys.TAB)  # a word suggestion is one word: Tab takes all of it
    assert value(page) == "First Citizen:\nWe are" + suggestion
    assert page.switch_to.active_element == editor
    _wait(lambda: state(page) == "shown", "the next suggestion")
    assert shown(page) == api_suggestions(url, value(page))[0]

    editor.send_keys("x")  # typing on: the suggestion goes at once, whatever comes next
    assert shown(page) == "" and state(page) in ("waiting", "shown")
    _wait(lambda: state(page) == "shown", "a suggestion for the new text")
    assert shown(page) == api_suggestions(url, value(page))[0]

    editor.send_keys(Keys.ESCAPE)
    assert state(page) == "dismissed" and shown(page) == ""
    editor.send_keys(Keys.TAB)  # nothing shown: Tab leaves the editor, as it always does
    assert page.switch_to.active_element != editor
    assert _errors(page) == []


def test_phrases_alternatives_and_shift_tab(page, writing_server):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, _ = writing_server
    Select(page.find_element("id", "writer-unit")).select_by_value("phrase")
    editor = page.find_element("id", "editor")
    editor.send_keys("MENENIUS:\nO, sir, you are")
    _wait(lambda: state(page) == "shown", "a suggestion")
    expected = api_suggestions(url, "MENENIUS:\nO, sir, you are", unit="phrase")
    assert shown(page) == expected[0]
    assert len(page.find_elements("css selector", "#alternatives li")) == len(expected)

    ActionChains(page).key_down(Keys.ALT).send_keys(Keys.ARROW_DOWN).key_up(Keys.ALT).perform()
    assert shown(page) == expected[1]
    ActionChains(page).key_down(Keys.ALT).send_keys(Keys.ARROW_UP).send_keys(Keys.ARROW_UP).key_up(Keys.ALT).perform()
    assert shown(page) == expected[-1]  # round the list

    text, suggestion = "MENENIUS:\nO, sir, you are", expected[-1]
    word = FIRST_WORD.match(suggestion)
    editor.send_keys(Keys.TAB)  # Tab takes the first word of a phrase, Shift-Tab all of the next
    taken = word.group(0) if word else suggestion
    assert value(page) == text + taken
    _wait(lambda: state(page) == "shown", "the next suggestion")
    rest = shown(page)
    ActionChains(page).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert value(page) == text + taken + rest
    assert _errors(page) == []


def test_an_answer_for_a_text_that_has_changed_is_never_shown(page, writing_server, monkeypatch):
    """The server holds its answer to the first request while the writer types on; released,
    that answer must not appear: every suggestion ever drawn belongs to the text it was drawn on."""
    url, served = writing_server
    gate, held = threading.Event(), threading.Event()
    real_suggest = served.model.suggest

    def slow_suggest(*args, **kwargs):
        if not held.is_set():
            held.set()
            gate.wait(WAIT_S)
        return real_suggest(*args, **kwargs)

    monkeypatch.setattr(served.model, "suggest", slow_suggest)
    page.execute_script("""
        window.drawn = [];
        new MutationObserver(() => {
            const s = document.getElementById('suggestion').textContent;
            if (s) window.drawn.push([document.getElementById('ghost-text').textContent,
                                      document.getElementById('editor').value]);
        }).observe(document.getElementById('suggestion'), {childList: true, characterData: true, subtree: true});""")
    editor = page.find_element("id", "editor")
    editor.send_keys("I will not")
    _wait(held.is_set, "the first request to reach the server")
    editor.send_keys(" be")  # the first answer is now for a text that has changed
    gate.set()
    _wait(lambda: state(page) == "shown", "a suggestion for the new text")
    assert shown(page) == api_suggestions(url, "I will not be")[0]
    drawn = page.execute_script("return window.drawn")
    assert drawn and all(ghost == text for ghost, text in drawn), drawn
    assert _errors(page) == []


def test_the_writing_view_fits_a_phone_screen(page):
    page.set_window_size(390, 844)
    overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
    for element_id in ("editor", "writer-unit", "view-generate", "view-write"):
        box = page.find_element("id", element_id).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, f"#{element_id} does not fit"
