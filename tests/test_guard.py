"""chargen serve against a hostile web page: Host names, origins, content types, framing (chargen/serve/guard.py)."""

import socket

import pytest

starlette = pytest.importorskip("starlette", reason="chargen serve needs the serve extra")

from starlette.testclient import TestClient  # noqa: E402

from chargen.serve import app as server  # noqa: E402
from chargen.serve import guard  # noqa: E402
from chargen.serve import models as serving  # noqa: E402
from chargen.serve.requests import Limits  # noqa: E402

EVIL = "http://evil.example"
GENERATE = {"prime": "All:", "length": 5, "seed": 1}


@pytest.fixture(scope="module")
def served(session_text_run):
    return serving.load_models([str(session_text_run)], Limits())


@pytest.fixture
def generations(served, monkeypatch):
    """Every generation the model runs, recorded: a refused request must run none."""
    calls, model = [], served[0].model
    for name in ("generate", "stream", "prime_state"):
        real = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls


def client(served, base_url="http://127.0.0.1:8000", hosts=frozenset()):
    return TestClient(server.create_app(served, Limits(), hosts), base_url=base_url)


# -- Host: DNS rebinding ----------------------------------------------------------------------------


def test_a_request_for_a_foreign_host_name_is_refused(served, generations):
    """Issue 21: `curl -H 'Host: evil.example' 127.0.0.1:PORT/api/models` answered the model list,
    so after a DNS rebinding a foreign page could read it."""
    rebound = client(served, base_url="http://evil.example:8000")
    for method, path, body in (("GET", "/api/models", None), ("POST", "/api/generate", GENERATE),
                               ("GET", "/generate?start_text=All&n=1", None), ("GET", "/", None)):
        response = rebound.request(method, path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert "does not answer requests for host 'evil.example:8000'" in response.json()["error"]
    assert generations == []


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://LOCALHOST.",
                                      "http://[::1]:8000", "http://127.1.2.3", "http://studio.localhost:8000"])
def test_loopback_names_are_answered(served, base_url):
    assert client(served, base_url=base_url).get("/api/models").status_code == 200


def test_other_names_are_answered_only_when_allowed(served):
    hosts = guard.allowed_hosts("192.168.1.5", ["studio.lan"])
    for base_url, status in (("http://192.168.1.5:8000", 200), ("http://studio.lan", 200),
                             ("http://localhost:8000", 200), ("http://evil.example", 400)):
        assert client(served, base_url, hosts).get("/api/models").status_code == status, base_url
    assert client(served, EVIL, guard.allowed_hosts("127.0.0.1", ["*"])).get("/api/models").status_code == 200


def test_listening_on_every_interface_answers_this_machines_names():
    hosts = guard.allowed_hosts("0.0.0.0")
    assert guard._hostname(socket.gethostname()) in hosts and "evil.example" not in hosts


def test_host_names_are_read_without_port_brackets_case_or_final_dot():
    assert [guard._hostname(h) for h in ("Example.COM:80", "[::1]:8000", "::1", "localhost.", "10.0.0.1")] == [
        "example.com", "::1", "::1", "localhost", "10.0.0.1"]
    assert guard.is_loopback_name("127.0.0.2") and guard.is_loopback_name("[::1]:80")
    assert not guard.is_loopback_name("0.0.0.0") and not guard.is_loopback_name("localhost.evil.example")


# -- Origin and Sec-Fetch-Site: other pages ---------------------------------------------------------


def test_a_text_plain_post_from_another_page_runs_no_generation(served, generations):
    """Issue 21: a Content-Type: text/plain POST from Origin: http://evil.example (no preflight
    needed) ran a generation."""
    web = client(served)
    response = web.post("/api/generate", content=b'{"prime": "All:", "length": 5}',
                        headers={"content-type": "text/plain", "origin": EVIL, "sec-fetch-site": "cross-site"})
    assert response.status_code == 403 and "cross-origin request from http://evil.example" in response.json()["error"]
    form = web.post("/api/generate", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["error"]
    assert generations == []


def test_an_image_tag_on_another_page_runs_no_generation(served, generations):
    """Issue 21: `<img src="http://127.0.0.1:PORT/generate?n=10">` ran a generation. A browser sends no
    Origin for it, but says Sec-Fetch-Site: cross-site."""
    response = client(served).get("/generate", params={"start_text": "All", "n": 10},
                                  headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors",
                                           "sec-fetch-dest": "image"})
    assert response.status_code == 403 and "cross-site request refused" in response.json()["error"]
    assert generations == []


@pytest.mark.parametrize("headers", [
    {"origin": EVIL}, {"origin": "null"}, {"origin": "http://127.0.0.1:9999"}, {"origin": "https://127.0.0.1:8000"},
    {"sec-fetch-site": "same-site"}, {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"},
])
def test_every_api_refuses_other_origins(served, generations, headers):
    web = client(served)
    for method, path, body in (("GET", "/api/models", None), ("POST", "/api/generate", GENERATE),
                               ("GET", "/generate?start_text=All&n=1", None)):
        assert web.request(method, path, json=body, headers=headers).status_code == 403, (path, headers)
    assert generations == []


@pytest.mark.parametrize("headers", [
    {},  # curl, scripts, rnn-writer: not a browser
    {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},  # the studio itself
    {"origin": "http://127.0.0.1:8000"},
    {"sec-fetch-site": "none"},  # typed into the address bar
])
def test_the_studio_and_clients_that_are_not_browsers_are_answered(served, headers):
    web = client(served)
    assert web.get("/api/models", headers=headers).status_code == 200
    assert web.post("/api/generate", json=GENERATE, headers=headers).status_code == 200
    assert web.get("/generate", params={"start_text": "All", "n": 1}, headers=headers).status_code == 200


def test_a_link_from_another_site_opens_the_studio_page(served):
    navigation = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    assert client(served).get("/", headers=navigation).status_code == 200


def test_a_json_post_with_a_charset_is_json(served):
    response = client(served).post("/api/generate", content=b'{"length": 3}',
                                   headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200


# -- headers: framing and scripts -------------------------------------------------------------------


def test_every_answer_forbids_framing_and_foreign_scripts(served):
    web = client(served)
    answers = [web.get("/"), web.get("/studio/app.js"), web.get("/api/models"), web.get("/nowhere"),
               web.post("/api/generate", json={"length": -1}), web.get("/api/models", headers={"origin": EVIL}),
               client(served, EVIL).get("/")]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 400, 403, 400]
    for answer in answers:
        assert answer.headers["x-frame-options"] == "DENY"
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "default-src 'self'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
