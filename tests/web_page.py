"""The browser tests' shared tools: a briefly trained CVAE, `zoo serve` on it, headless Chromium
(Debian's, driven by Selenium), and helpers that type into the page and read back what it drew.

tests/conftest.py registers the fixtures, so the run is trained once for every browser test module.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install chromium chromium-driver (Debian) and pip install selenium (the test extra)"
CVAE_STEPS = 200  # the fewest here whose samples the classifier recognises (98% at 200 steps, 76% at 100)
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1100,900",
)


def train_run(registry, book, variant: str, steps: int, workdir: Path) -> Path:
    """Train `variant` on the digits for `steps` steps, checkpointing at the end."""
    from zoo.training.experiment import (
        train_and_evaluate,
    )  # here, not at the top: conftest imports this module for every test

    recipe = book.resolve(
        variant, registry, [f"train.steps={steps}", f"train.log_every={steps}", f"train.checkpoint_every={steps}"]
    )
    train_and_evaluate(recipe, workdir, registry, progress=False)
    return workdir


@pytest.fixture(scope="session")
def cvae_run(registry, book, tmp_path_factory) -> Path:
    return train_run(registry, book, "cvae_mlp", CVAE_STEPS, tmp_path_factory.mktemp("web") / "cvae")


@pytest.fixture(scope="session")
def digit_classifier(registry, cvae_run):
    """The harness classifier, kept where export-web looks for it (so it is trained once)."""
    from zoo.evaluation import classifier
    from zoo.evaluation.trained_run import Run

    experiment = Run.load(cvae_run, registry).experiment
    return classifier.cached(experiment.dataset, cvae_run / "classifiers" / "digits.npz")


@pytest.fixture(scope="session")
def cvae_server(cvae_run, tmp_path_factory, request):
    """`zoo serve RUN --port 0` in a subprocess; yields the address it printed."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "zoo.cli.main", "serve", str(cvae_run), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
        )
    try:
        request.getfixturevalue("digit_classifier")  # trained meanwhile: the server spends ~10 s loading
        line = read_line(process, timeout=120)
        assert line.startswith(f"serving {cvae_run} at http://127.0.0.1:"), (line, log.read_text()[-2000:])
        yield line.split(" at ")[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The first line the process prints, waiting at most `timeout` seconds."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"nothing printed within {timeout} s")
    return process.stdout.readline()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium; missing: skipped with the install hint, or failed under CI=true."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if webdriver is None or not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have the browser tests' tools: {INSTALL_HINT}")
        pytest.skip(f"no headless Chromium: {INSTALL_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # so Selenium Manager downloads nothing
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (*HEADLESS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def wait_until(condition, timeout: float = 60.0, what: str = "the page"):
    """Poll `condition` until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def page_state(driver) -> dict:
    """The page's state, newest request number, the text, classes and layout of the line drawn, and the error shown."""
    return driver.execute_script("""
        const error = document.getElementById("error");
        const shown = window.zooPage && window.zooPage.shown;
        return {state: document.body.dataset.state, latest: window.zooPage ? window.zooPage.latest : -1,
                text: shown ? shown.text : null, labels: shown ? shown.labels : [], layout: shown ? shown.layout : [],
                error: error.hidden ? "" : error.textContent};""")


def settled(driver, after: int, state: str = "ready"):
    """Wait until a request newer than `after` has finished in `state`; returns the page's state."""
    return wait_until(lambda: (s := page_state(driver))["latest"] > after and s["state"] == state and s, what=state)


def type_text(driver, text: str, until) -> dict:
    """Replace the text box's content by `text`; wait until the page's state satisfies `until`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "text")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    box.send_keys(text)
    return wait_until(lambda: (s := page_state(driver))["state"] in ("ready", "error") and until(s) and s, what=text)


def set_text(driver, text: str, until) -> dict:
    """Put `text` in the text box in one input event (as a paste would), so that no shorter text is
    ever rendered on the way; wait until the page's state satisfies `until`."""
    driver.execute_script(
        """
        const box = document.getElementById("text");
        box.value = arguments[0];
        box.dispatchEvent(new Event("input"));""",
        text,
    )
    return wait_until(lambda: (s := page_state(driver))["state"] in ("ready", "error") and until(s) and s, what=text)


def canvas_images(driver, selector: str) -> np.ndarray:
    """The drawn images read back from the canvases, (N, H, W, 1) with 1 = ink."""
    rows = driver.execute_script(
        """
        return Array.from(document.querySelectorAll(arguments[0])).map(c => {
            const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            return [c.height, c.width, Array.from(data.filter((_, i) => i % 4 === 0))];
        });""",
        selector,
    )
    return np.stack([1.0 - np.asarray(red, np.float64).reshape(h, w, 1) / 255.0 for h, w, red in rows])


def drawn_line(driver) -> tuple[np.ndarray, dict]:
    """The written line read back from its canvas, (height, width) with 1 = ink, and what the page says it drew."""
    return canvas_images(driver, "#line")[0, :, :, 0], driver.execute_script("return window.zooPage.shown;")


def glyph_spans(layout, shape, scale: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Column ranges of the glyphs and of the gaps in a drawn line: a glyph is its image's width,
    a gap half of it (rounded up), both times `scale`."""
    width = shape[1] * scale
    gap = -(-shape[1] // 2) * scale
    glyphs, gaps, x = [], [], 0
    for token in layout:
        step = gap if token is None else width
        (gaps if token is None else glyphs).append((x, x + step))
        x += step
    return glyphs, gaps


def line_glyphs(line: np.ndarray, shown: dict) -> np.ndarray:
    """The glyphs of a drawn line at the images' own size (each block of scale x scale pixels
    averaged), (N, H, W, 1)."""
    height, width = shown["shape"][:2]
    scale = shown["scale"]
    glyphs, _ = glyph_spans(shown["layout"], shown["shape"], scale)
    return np.stack(
        [
            line[:, start:stop].reshape(height, scale, width, scale).mean(axis=(1, 3))[..., None]
            for start, stop in glyphs
        ]
    )


def post(url: str, body: bytes, method: str = "POST") -> tuple[int, dict]:
    """(status, JSON answer) of one request."""
    request = urllib.request.Request(
        url, data=body if method == "POST" else None, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
