"""Take the README's screenshot of the studio's writing view, from a model you trained.

Serves RUN on a free port of this machine, opens the studio in headless Chromium (Debian's
chromium and chromium-driver, as tests/test_studio_browser.py uses), switches to the
writing view, types TEXT and waits for the model's suggestions, then saves a PNG.

    chargen train data/tinyshakespeare.txt --hidden 256 --steps 3000 --out checkpoints/ts-writer
    python bench/writer_screenshot.py checkpoints/ts-writer --out docs/writer.png

Needs the serve and test extras (starlette, uvicorn, selenium). Nothing leaves the machine.
The server and the browser are bench/studio_screenshots.py's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.studio_screenshots import browser, serve, wait  # noqa: E402

TEXT = ("ROMEO:\nI dreamt a dream to-night.\n\nMERCUTIO:\nAnd so did I.\n\nROMEO:\nWell, what was yours?\n\n"
        "MERCUTIO:\nThat dreamers often lie, and that I")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or checkpoint of a text model")
    parser.add_argument("--out", default=str(ROOT / "docs" / "writer.png"), help="where to save the PNG")
    parser.add_argument("--text", default=TEXT, help="what to type in the editor")
    parser.add_argument("--unit", default="word", choices=["word", "phrase", "line"])
    args = parser.parse_args()

    from selenium.webdriver.support.ui import Select

    url, stop = serve([args.run])
    try:
        with browser(url, size="1200,820") as driver:
            driver.find_element("id", "view-write").click()
            Select(driver.find_element("id", "writer-unit")).select_by_value(args.unit)
            driver.find_element("id", "editor").send_keys(args.text)
            wait(lambda: driver.find_element("id", "editor").get_attribute("data-suggestion") == "shown",
                 "a suggestion")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
            print(f"wrote {args.out}: suggestion {driver.find_element('id', 'suggestion').text!r}")
    finally:
        stop()


if __name__ == "__main__":
    main()
