"""The annotation page in a real browser: Debian's chromium, headless, driven by Playwright.

Needs `apt-get install chromium` (/usr/bin/chromium) and `pip install playwright`; it does not
need `playwright install` (which downloads its own browsers). Skipped when either is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partseg.plumbing.io import read_mask, save_png, save_yaml
from partseg.paint.server import serve

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None,
                       reason="the playwright package is missing: pip install playwright "
                              "(no `playwright install`: the test uses /usr/bin/chromium)"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is missing: apt-get install -y chromium"),
]

WIDTH, HEIGHT = 16, 12
UNLABELLED = 255


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    for stem in ("a", "b"):
        save_png(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), tmp_path / "images" / f"{stem}.png")
    save_yaml(["background", "body", "head"], tmp_path / "classes.yaml")
    return tmp_path


class Server:
    """The annotation server, restartable on the same port."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.server, self.url = serve(folder, log=lambda message: None)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def restart(self) -> None:
        self.server, _ = serve(self.folder, port=self.server.server_address[1], log=lambda m: None)


@pytest.fixture
def server(folder):
    server = Server(folder)
    yield server
    server.stop()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    page.wait_for_function("window.partsegAnnotate && window.partsegAnnotate.app.doc !== null")
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def pixel_centre(page, x: int, y: int) -> tuple[float, float]:
    """Screen position of image pixel (x, y)'s centre on the (zoomed) canvas."""
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / WIDTH
    assert box["height"] / HEIGHT == pytest.approx(scale)
    return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale


def drag(page, start: tuple[int, int], end: tuple[int, int]) -> None:
    page.mouse.move(*pixel_centre(page, *start))
    page.mouse.down()
    page.mouse.move(*pixel_centre(page, *end), steps=12)
    page.mouse.up()


def wait_saved(page) -> None:
    page.wait_for_function("window.partsegAnnotate.allSaved()")
    assert page.locator("#save-status").get_attribute("data-state") == "saved"


def test_paint_change_class_undo_and_save(page, folder):
    assert page.locator("#image-name").inner_text() == "a"
    for _ in range(5):
        page.keyboard.press("[")  # brush size down to 1 px
    assert page.locator("#brush-size").input_value() == "1"

    page.keyboard.press("1")
    drag(page, (2, 3), (9, 3))          # body: a horizontal line
    page.keyboard.press("2")
    drag(page, (5, 1), (5, 8))          # head: crosses the body line at (5, 3) ...
    page.keyboard.press("Control+z")    # ... and is undone
    drag(page, (12, 6), (12, 10))       # head: a vertical line
    wait_saved(page)

    expected = np.full((HEIGHT, WIDTH), UNLABELLED, np.uint8)
    expected[3, 2:10] = 1
    expected[6:11, 12] = 2
    np.testing.assert_array_equal(read_mask(folder / "masks" / "a.png"), expected)
    assert page.locator("#progress-text").inner_text() == "1 of 2 annotated"


def test_fill_eraser_redo_and_reload(page, folder):
    page.keyboard.press("0")
    page.keyboard.press("f")
    page.mouse.click(*pixel_centre(page, 0, 0))  # everything is unlabelled: one connected region
    page.keyboard.press("e")
    for _ in range(5):
        page.keyboard.press("[")
    drag(page, (4, 5), (7, 5))          # eraser: back to unlabelled
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+y")    # redo the erase
    wait_saved(page)

    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[5, 4:8] = UNLABELLED
    np.testing.assert_array_equal(read_mask(folder / "masks" / "a.png"), expected)

    # The next image, then a fresh page: the saved mask of the first one is loaded for editing.
    page.keyboard.press("ArrowRight")
    page.wait_for_function("window.partsegAnnotate.app.doc.stem === 'b'")
    page.reload()
    page.wait_for_function("window.partsegAnnotate && window.partsegAnnotate.app.doc !== null")
    assert page.locator("#image-name").inner_text() == "b"  # opens the first image not annotated
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("window.partsegAnnotate.app.doc.stem === 'a'")
    loaded = page.evaluate("Array.from(window.partsegAnnotate.app.doc.mask)")
    np.testing.assert_array_equal(np.array(loaded, np.uint8).reshape(HEIGHT, WIDTH), expected)


def test_an_edit_made_while_the_server_is_down_is_saved_when_it_is_back(page, server, folder):
    server.stop()
    page.keyboard.press("2")
    page.mouse.click(*pixel_centre(page, 3, 4))
    page.wait_for_function("document.querySelector('#save-status').dataset.state === 'error'")
    assert "Not saved (a)" in page.locator("#save-status").inner_text()
    assert not (folder / "masks" / "a.png").exists()

    server.restart()  # the page retries on its own
    wait_saved(page)
    expected = np.full((HEIGHT, WIDTH), UNLABELLED, np.uint8)
    expected[3:6, 2:5] = 2  # the default 3 px brush around pixel (3, 4)
    np.testing.assert_array_equal(read_mask(folder / "masks" / "a.png"), expected)
