"""Take the README's screenshot of the studio's writing view, from a model you trained.

Serves RUN on a free port of this machine, opens the studio in headless Chromium (Debian's
chromium and chromium-driver, as tests/test_studio_browser.py uses), switches to the
writing view, types TEXT and waits for the model's suggestions, then saves a PNG.

    chargen train data/tinyshakespeare.txt --hidden 256 --steps 3000 --out checkpoints/ts-writer
    python bench/writer_screenshot.py checkpoints/ts-writer --out docs/writer.png

Needs the serve and test extras (starlette, uvicorn, selenium). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TEXT = ("ROMEO:\nI dreamt a dream to-night.\n\nMERCUTIO:\nAnd so did I.\n\nROMEO:\nWell, what was yours?\n\n"
        "MERCUTIO:\nThat dreamers often lie, and that I")
WAIT_S = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or checkpoint of a text model")
    parser.add_argument("--out", default=str(ROOT / "docs" / "writer.png"), help="where to save the PNG")
    parser.add_argument("--text", default=TEXT, help="what to type in the editor")
    parser.add_argument("--unit", default="word", choices=["word", "phrase", "line"])
    args = parser.parse_args()

    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select

    from chargen.serve import app as server
    from chargen.serve import models as serving
    from chargen.serve.requests import Limits

    limits = Limits()
    sock = server.listen("127.0.0.1", 0)
    live = uvicorn.Server(uvicorn.Config(server.create_app(serving.load_models([args.run], limits), limits),
                                         log_level="warning", lifespan="off"))
    threading.Thread(target=live.run, kwargs={"sockets": [sock]}, daemon=True).start()
    wait(lambda: live.started, "the server")

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--window-size=1200,820", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait(lambda: driver.find_element("tag name", "body").get_attribute("data-status") == "ready", "the page")
        driver.find_element("id", "view-write").click()
        Select(driver.find_element("id", "writer-unit")).select_by_value(args.unit)
        driver.find_element("id", "editor").send_keys(args.text)
        wait(lambda: driver.find_element("id", "editor").get_attribute("data-suggestion") == "shown", "a suggestion")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}: suggestion {driver.find_element('id', 'suggestion').text!r}")
    finally:
        driver.quit()
        live.should_exit = True


def wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
