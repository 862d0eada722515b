"""Screenshots of the studio serving real models: docs/studio.png (text) and docs/studio-music.png.

    chargen train data/tinyshakespeare.txt --minutes 10 --out checkpoints/ts-shot
    chargen train data/bach --steps 2200 --out checkpoints/bach-shot   # about 10 minutes on one core
    python bench/studio_screenshots.py checkpoints/ts-shot checkpoints/bach-shot

Serves both runs as `chargen serve` does (in this process, on a free port), drives the
system's headless Chromium through /usr/bin/chromedriver (as tests/test_studio_browser.py
does; nothing is downloaded), generates a text from the text model's start state and a piece
continuing the first 8 s of data/bach/bach_bwv10_7.mid with the music model (the prime drawn
in grey), and saves one screenshot of each. --out-dir writes them elsewhere; --seed and
--prime choose the text shown, --prime-midi the piece continued ("" starts from nothing).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text_run")
    parser.add_argument("music_run")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--prime", default="", help="the text model's prime (default: its start state)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--length", type=int, default=600)
    parser.add_argument("--prime-midi", default=str(ROOT / "data" / "bach" / "bach_bwv10_7.mid"))
    args = parser.parse_args()
    url, stop = serve([args.text_run, args.music_run])
    try:
        with browser(url) as driver:
            shoot_text(driver, args.prime, args.seed, args.length, args.out_dir / "studio.png")
            shoot_music(driver, args.prime_midi, args.seed, args.out_dir / "studio-music.png")
    finally:
        stop()


def serve(runs: list[str]):
    """`chargen serve RUN...` on a free port, in a thread: (its address, a function that stops it)."""
    import uvicorn

    from chargen.serve import app as server
    from chargen.serve import models as serving
    from chargen.serve.requests import Limits

    limits = Limits()
    app = server.create_app(serving.load_models(runs, limits), limits)
    sock = server.listen("127.0.0.1", 0)
    live = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=live.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait(lambda: live.started, "the server to start")

    def stop():
        live.should_exit = True
        thread.join(timeout=WAIT_S)

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


class browser:
    """Headless Chromium at `url` (a window of `size`, 1280 x 900 unless said), once the studio says it is ready."""

    def __init__(self, url: str, size: str = "1280,900"):
        self.url, self.size = url, size

    def __enter__(self):
        import tempfile

        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.TemporaryDirectory()
        options = Options()
        options.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                     f"--window-size={self.size}", f"--user-data-dir={self.profile.name}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.get(self.url + "/")
        wait(lambda: status(self.driver) == "ready", "the page")
        return self.driver

    def __exit__(self, *exc):
        self.driver.quit()
        self.profile.cleanup()


def shoot_text(driver, prime: str, seed: int, length: int, path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "model")).select_by_index(0)
    fill(driver, "prime", prime)
    fill(driver, "length", length)
    fill(driver, "seed", seed)
    generate(driver)
    save(driver, path)


def shoot_music(driver, prime_midi: str, seed: int, path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", "model")).select_by_index(1)
    if prime_midi:
        fill(driver, "prime-seconds", 8)
        driver.find_element("id", "prime-file").send_keys(str(Path(prime_midi).resolve()))
    fill(driver, "seconds", 16)
    fill(driver, "seed", seed)
    generate(driver)
    save(driver, path)


def generate(driver) -> None:
    driver.find_element("id", "generate").click()
    wait(lambda: status(driver) in ("done", "error"), "the sample")
    if status(driver) != "done":
        raise SystemExit(f"the studio reported: {driver.find_element('id', 'status').text}")


def save(driver, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    print(f"wrote {path}")


def fill(driver, element_id: str, value) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(str(value))


def status(driver) -> str:
    return driver.find_element("tag name", "body").get_attribute("data-status")


def wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
