"""The written line, in headless Chromium: forgiving input laid out as typed (digits side by side,
gaps as blank paper), saved as a PNG, refusals shown inline while the page keeps working, on the
served page and on the static export; and the export's JavaScript parser (zoo/web/writing.js)
against zoo.web.writing on the same inputs."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.web_page import (
    REPO,
    drawn_line,
    glyph_spans,
    line_glyphs,
    page_state,
    post,
    set_text,
    settled,
    type_text,
    wait_until,
)
from zoo.evaluation import classifier
from zoo.web.export_web import export_web
from zoo.web.writing import GAP_CHARACTERS, WHITESPACE, classes, layout

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FORGIVING = ["2 026", "2,026", "-3.14", "12/25"]
SCALE = 6  # 8x8 digits at about 48 pixels, the page's handwriting height
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def exported_page(cvae_run, digit_classifier, registry, tmp_path_factory) -> Path:
    """`zoo export-web` of the test run (the classifier is already trained, so this is quick)."""
    out = tmp_path_factory.mktemp("export") / "page"
    export_web(cvae_run, out, registry, per_class=10)
    return out


@pytest.fixture(params=["served", "exported"])
def page_url(request) -> str:
    """The page of `zoo serve`, then the static page of `zoo export-web` (the same tests on both)."""
    if request.param == "served":
        return request.getfixturevalue("cvae_server")
    return (request.getfixturevalue("exported_page") / "index.html").as_uri()


def write(browser, text: str) -> dict:
    """Type `text` and wait until the page has drawn exactly it (the layout zoo.web.writing gives)."""
    expected = layout(text, DIGITS)
    return type_text(browser, text, lambda s: s["text"] == text and s["layout"] == expected and s["state"] == "ready")


def line_width(tokens) -> int:
    """Pixels a line is wide: 8 per glyph, 4 per gap, times the scale."""
    return SCALE * sum(4 if token is None else 8 for token in tokens)


def test_forgiving_input_is_written_on_one_line_with_blank_gaps(browser, page_url, digit_classifier):
    browser.get(page_url)
    settled(browser, 0)
    images, labels = [], []
    for text in FORGIVING:
        state = write(browser, text)
        line, shown = drawn_line(browser)
        tokens = layout(text, DIGITS)
        assert state["labels"] == [DIGITS[k] for k in classes(tokens)] and shown["scale"] == SCALE
        assert line.shape == (8 * SCALE, line_width(tokens)), (text, line.shape)
        glyphs, gaps = glyph_spans(tokens, shown["shape"], SCALE)
        assert len(gaps) == text.count(" ") + sum(text.count(p) for p in ",-./")
        for start, stop in gaps:
            assert np.all(line[:, start:stop] == 0), (text, start, stop)  # blank paper, full height
        for start, stop in glyphs:
            assert line[:, start:stop].max() > 0.5, (text, start, stop)  # ink in every glyph
        images.append(line_glyphs(line, shown))
        labels += classes(tokens)
    accuracy = classifier.accuracy(digit_classifier, np.concatenate(images).astype(np.float32), np.array(labels))
    assert accuracy >= 0.7, accuracy


def test_the_save_button_writes_the_line_as_a_png(browser, page_url, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    browser.get(page_url)
    settled(browser, 0)
    write(browser, "-3.14")
    line, shown = drawn_line(browser)
    browser.find_element(By.ID, "save").click()
    saved = wait_until(lambda: next(tmp_path.glob("*.png"), None), what="the PNG download")
    assert saved.name == "vae-zoo-3-14.png"
    data = saved.read_bytes()
    assert data[:8] == PNG_SIGNATURE and struct.unpack(">II", data[16:24]) == (line_width(layout("-3.14", DIGITS)), 48)
    ink = 1.0 - np.asarray(Image.open(saved).convert("RGB"), np.float64)[..., 0] / 255.0
    np.testing.assert_array_equal(ink, line)  # the PNG is the line as drawn
    _, gaps = glyph_spans(shown["layout"], shown["shape"], SCALE)
    assert [start for start, _ in gaps] == [0, 4 * SCALE + 8 * SCALE] and all(np.all(ink[:, a:b] == 0) for a, b in gaps)


REFUSED = [
    ("12x4", "unknown class '12x4'; classes are 0..9 (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
    ("3 ²", "unknown class '²'; classes are 0..9"),
    ("-.", "empty condition: nothing to write"),
    ("1" * 65, "65 classes asked for; at most 64 at a time"),
]


def test_refused_input_is_shown_inline_and_the_page_keeps_working(browser, page_url):
    from selenium.webdriver.common.by import By

    browser.get(page_url)
    settled(browser, 0)
    write(browser, "2 026")
    before, _ = drawn_line(browser)
    for text, message in REFUSED:
        shown = set_text(browser, text, lambda s, message=message: s["error"].startswith(message))
        assert shown["state"] == "error" and shown["text"] == "2 026", (text, shown)  # the last line stays
        error, box, line = (browser.find_element(By.ID, name) for name in ("error", "text", "line"))
        assert error.is_displayed() and box.get_attribute("aria-invalid") == "true"
        assert box.rect["y"] < error.rect["y"] < line.rect["y"]  # between the text box and the line
        assert not browser.find_element(By.ID, "save").is_enabled()
        np.testing.assert_array_equal(drawn_line(browser)[0], before)
    shown = write(browser, "7")
    assert shown["error"] == "" and not browser.find_element(By.ID, "error").is_displayed()
    assert browser.find_element(By.ID, "save").is_enabled() and drawn_line(browser)[0].shape == (48, 48)


def test_the_api_answers_the_layout_and_one_image_per_class(cvae_server):
    for text in FORGIVING:
        status, answer = post(cvae_server + "api/sample", json.dumps({"text": text, "seed": 1}).encode())
        tokens = layout(text, DIGITS)
        assert status == 200 and answer["layout"] == tokens, (text, answer.get("layout"))
        assert answer["labels"] == [DIGITS[k] for k in classes(tokens)] and len(answer["images"]) == len(
            classes(tokens)
        )
    status, answer = post(cvae_server + "api/sample", json.dumps({"text": "2 0x6"}).encode())
    assert status == 400 and answer["error"].startswith("unknown class '0x6'; classes are 0..9")


def test_the_static_page_writes_class_names_and_refuses_an_ambiguous_beginning(browser, exported_page, tmp_path):
    """The export of the digits model, told its classes are Fashion-MNIST's: the names are only text to the page."""
    from selenium.webdriver.common.by import By

    page = tmp_path / "fashion"
    page.mkdir()
    for source in exported_page.iterdir():
        (page / source.name).write_bytes(source.read_bytes())
    manifest, weights = (page / "model.js").read_text().split("\n", 1)
    model = json.loads(manifest.removeprefix("window.ZOO_MODEL = ").removesuffix(";"))
    model.update(class_names=FASHION, digits=False)
    (page / "model.js").write_text(f"window.ZOO_MODEL = {json.dumps(model)};\n{weights}")

    browser.get((page / "index.html").as_uri())
    assert settled(browser, 0)["layout"] == [0, None, 1, None, 2, None, 3]  # the page's first line: "0 1 2 3"
    shown = type_text(browser, "s", lambda s: s["error"].startswith("ambiguous"))
    assert shown["error"] == "ambiguous class 's': it could be Sandal, Shirt, Sneaker; type more of the name"
    shown = type_text(browser, "snea, ANKLE BOOT", lambda s: s["state"] == "ready" and s["text"] == "snea, ANKLE BOOT")
    assert shown["layout"] == [7, None, None, 9] and shown["labels"] == ["Sneaker", "Ankle boot"]
    shown = type_text(browser, "boots", lambda s: "'boots'" in s["error"])
    assert shown["error"].startswith("unknown class 'boots'; classes are 0..9 (T-shirt/top, Trouser, Pullover")
    type_text(browser, "bag", lambda s: s["state"] == "ready" and s["text"] == "bag")
    before = page_state(browser)["latest"]
    next(b for b in browser.find_elements(By.CSS_SELECTOR, "#picker button") if b.text == "T-shirt/top").click()
    assert settled(browser, before)["layout"] == [8, None, 0]  # the picker appends the name: "bag T-shirt/top"


def random_lines(count: int, seed: int) -> list[str]:
    """Short random texts of digits, letters of the class names, gaps and characters no class has."""
    alphabet = list("0123456789aAbBkKsStTnNeEoO ,-./") + ["\u202f", "\u2212", "²", "€", "İ", "\U0001f600", "\t"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10))) for _ in range(count)]


CROSS_CHECKED = [
    *FORGIVING,
    "2026",
    "3 12",
    "  7 ",
    "12x4",
    "²",
    "",
    "--",
    "sandal",
    "ankle boot",
    "snea",
    "s",
    "t",
    "T-SHIRT/TOP, bag",
    "Ankle boot,Sandal",
    "ankle b",
    "boots",
    "ki su",
    "ts",
    "11",
    "class 1",
    "class",
]
NAME_SETS = {
    "digits": DIGITS,
    "fashion": FASHION,
    "kmnist": ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"],
    "twelve": [f"class {k}" for k in range(12)],
}


@pytest.mark.parametrize("names", NAME_SETS.values(), ids=NAME_SETS.keys())
def test_the_javascript_parser_gives_the_python_answers(browser, names):
    texts = CROSS_CHECKED + random_lines(300, seed=len(names))
    info = {"class_names": names, "gap_characters": GAP_CHARACTERS, "whitespace": WHITESPACE}
    browser.get("about:blank")
    in_browser = browser.execute_script(
        (REPO / "zoo" / "web" / "writing.js").read_text()
        + """
        return arguments[1].map((text) => {
            try { return {tokens: window.ZooWriting.layout(text, arguments[0])}; }
            catch (error) { return {error: error.message}; }
        });""",
        info,
        texts,
    )

    def in_python(text: str) -> dict:
        try:
            return {"tokens": layout(text, names)}
        except Exception as error:  # any exception, so that a difference shows rather than stops the comparison
            return {"error": str(error)}

    differences = [(text, js, py) for text, js in zip(texts, in_browser) if js != (py := in_python(text))]
    assert differences == []
    assert (
        sum("tokens" in answer for answer in in_browser) > 10 and sum("error" in answer for answer in in_browser) > 10
    )
