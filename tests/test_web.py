"""`zoo serve` and `zoo export-web`, tested in a real headless Chromium (Debian's, driven by Selenium).

A CVAE trained briefly on the digits writes what the test types; the harness
classifier (trained on the real training digits) must recognise most of what
the page drew, read back from its canvas. The fixtures and helpers they share
with tests/test_web_line.py (what a typed line writes) are in tests/web_page.py.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tests.web_page import canvas_images, drawn_line, line_glyphs, page_state, post, settled, train_run, type_text
from zoo.evaluation import classifier
from zoo.web.browser_model import ExportError, dequantise, extract, quantise
from zoo.cli.main import main
from zoo.web.export_web import PAGE_FILES, REPORT_FILE
from zoo.web.generation import PageGenerator
from zoo.web.serve import make_server
from zoo.core.assembly import assemble
from zoo.evaluation.trained_run import Run

UNCONDITIONAL_STEPS = 200
ALL_DIGITS = "0123456789"


def write_and_collect(driver, text: str, rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """Type `text`, press "New samples" rounds - 1 times; every image drawn and the digit asked for."""
    from selenium.webdriver.common.by import By

    type_text(driver, text, lambda s: s["labels"] == list(text) and s["state"] == "ready")
    images = [line_glyphs(*drawn_line(driver))]
    for _ in range(rounds - 1):
        before = page_state(driver)["latest"]
        driver.find_element(By.ID, "resample").click()
        settled(driver, before)
        images.append(line_glyphs(*drawn_line(driver)))
    assert not np.allclose(images[0], images[-1]), "new samples must differ"
    return np.concatenate(images), np.tile(np.array([int(d) for d in text]), rounds)


def check_handwriting(images: np.ndarray, labels: np.ndarray, weights) -> float:
    """Every image shows something, and the classifier reads most as the digit asked for."""
    spread = images.reshape(len(images), -1).std(axis=1)
    assert images.shape[1:] == (8, 8, 1) and spread.min() > 0.1, spread.min()
    accuracy = classifier.accuracy(weights, images.astype(np.float32), labels)
    assert accuracy >= 0.7, accuracy
    return accuracy


def test_served_page_writes_the_digits_typed(browser, cvae_server, digit_classifier, tmp_path):
    browser.get(cvae_server)
    assert settled(browser, 0)["labels"] == list("2026")  # the page opens with the blog's example
    images, labels = write_and_collect(browser, ALL_DIGITS, rounds=3)
    assert browser.save_screenshot(str(tmp_path / "served.png")) and (tmp_path / "served.png").stat().st_size > 5000
    check_handwriting(images, labels, digit_classifier)


def test_page_shows_a_bad_input_and_recovers(browser, cvae_server):
    browser.get(cvae_server)
    settled(browser, 0)
    shown = type_text(browser, "12x4", lambda s: "'12x4'" in s["error"])
    assert shown["state"] == "error" and shown["error"].startswith("unknown class '12x4'; classes are 0..9")
    assert browser.find_element("id", "error").is_displayed()
    type_text(browser, "7", lambda s: s["labels"] == ["7"] and s["state"] == "ready" and s["error"] == "")
    assert not browser.find_element("id", "error").is_displayed()


BAD_REQUESTS = [
    ("api/sample", {"text": "3 1x"}, 400, "unknown class '1x'"),  # "3 12" is 3, a gap, 1 and 2 (zoo.web.writing)
    ("api/sample", {"text": "  "}, 400, "empty condition"),
    ("api/sample", {"text": "1" * 65}, 413, "at most 64"),
    ("api/sample", {"text": "1 " * 600}, 413, "at most 1000"),
    ("api/sample", {"text": 2026}, 400, "'text' must be a string"),
    ("api/sample", {"text": "1", "temperature": "hot"}, 400, "'temperature'"),
    ("api/sample", {"text": "1", "temperature": -1}, 400, "'temperature'"),
    ("api/sample", {"text": "1", "seed": 1.5}, 400, "'seed'"),
    ("api/grid", {}, 400, "writes classes"),
    ("api/nothing", {}, 404, "no such endpoint"),
]


def test_api_answers_bad_requests_with_json_errors_and_keeps_serving(cvae_server):
    for path, body, status, phrase in BAD_REQUESTS:
        answer = post(cvae_server + path, json.dumps(body).encode())
        assert answer[0] == status and phrase in answer[1]["error"], (path, body, answer)
    for raw, status, phrase in (
        (b'{"text": "20', 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be an object"),
        (b"\xff\xfe", 400, "malformed JSON"),
        (b" " * 20000, 413, "at most 16384"),
    ):
        answer = post(cvae_server + "api/sample", raw)
        assert answer[0] == status and phrase in answer[1]["error"], (raw[:20], answer)
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(cvae_server).netloc, timeout=60)
    connection.putrequest("POST", "/api/sample")  # no Content-Length
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 411 and "Content-Length" in json.loads(answer.read())["error"]
    connection.close()
    assert post(cvae_server + "missing.js", b"", "GET") == (404, {"error": "no such page: /missing.js"})
    assert post(cvae_server + "api/sample", b"", "GET")[0] == 405
    status, good = post(cvae_server + "api/sample", json.dumps({"text": "2026", "seed": 5}).encode())
    assert status == 200 and good["labels"] == list("2026") and good["shape"] == [8, 8, 1]
    assert np.asarray(good["images"]).shape == (4, 64)
    # each image depends on its own row only: padding to another batch size changes nothing
    _, longer = post(cvae_server + "api/sample", json.dumps({"text": "2" + "0" * 20, "seed": 5}).encode())
    np.testing.assert_allclose(longer["images"][0], good["images"][0], atol=2e-3)
    status, info = post(cvae_server + "api/info", b"", "GET")
    assert status == 200 and info["kind"] == "conditional" and info["class_names"] == list(ALL_DIGITS)


@pytest.mark.slow  # the page's CVAE, trained 200 steps (tests/web_page.py)
def test_serve_refuses_a_directory_without_a_model(cvae_run, tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err
        == f"zoo: error: {tmp_path} holds no run (no recipe.yaml); train one with `zoo train VARIANT --workdir {tmp_path}`\n"
    )
    (tmp_path / "recipe.yaml").write_text((cvae_run / "recipe.yaml").read_text())
    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("zoo: error: ") and "holds no checkpoint" in error and error.count("\n") == 1


def test_quantisation_keeps_each_weight_within_half_a_step():
    kernel = np.random.default_rng(0).normal(size=(40, 30)) * 0.3
    q, scale = quantise(kernel)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scale == pytest.approx(np.abs(kernel).max() / 127)
    assert np.abs(dequantise(kernel) - kernel).max() <= scale / 2 + 1e-12


def test_exported_page_runs_the_model_in_the_browser(browser, registry, cvae_run, digit_classifier, tmp_path, capsys):
    out = tmp_path / "page"
    assert main(["export-web", str(cvae_run), str(out)]) == 0
    report = json.loads((out / REPORT_FILE).read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert sorted(p.name for p in out.iterdir()) == sorted([*PAGE_FILES, REPORT_FILE])
    assert report["files"] == {name: (out / name).stat().st_size for name in PAGE_FILES}
    assert report["page_bytes"] == sum(report["files"].values())
    assert report["weights_bytes_int8"] < report["weights_bytes_float32"] / 3
    assert (
        report["class_accuracy_float"] >= 0.8 and report["class_accuracy_int8"] >= report["class_accuracy_float"] - 0.05
    )
    assert not any(word in (out / name).read_text() for name in PAGE_FILES for word in ("http://", "https://"))

    browser.get((out / "index.html").as_uri())
    assert settled(browser, 0)["labels"] == list("2026")
    images, labels = write_and_collect(browser, ALL_DIGITS, rounds=3)
    assert browser.save_screenshot(str(tmp_path / "exported.png"))
    check_handwriting(images, labels, digit_classifier)

    # the page's own decoder against the JAX model, on the same z and c
    loaded = Run.load(cvae_run, registry)
    experiment, graphdef, params = loaded.experiment, loaded.graphdef, loaded.params
    z = np.random.default_rng(1).standard_normal((5, experiment.model.latent_dim))
    c = np.eye(10)[[0, 3, 5, 7, 9]]
    in_browser = np.array(
        [
            browser.execute_script(
                "return window.zooPage.backend.decode(arguments[0], arguments[1]);", row.tolist(), onehot.tolist()
            )
            for row, onehot in zip(z, c)
        ]
    )
    model = nnx.merge(graphdef, params)
    expected = np.asarray(model.decode(jnp.asarray(z, jnp.float32), jnp.asarray(c, jnp.float32)).mean()).reshape(5, -1)
    assert np.abs(in_browser - expected).max() < 0.05


def test_export_refuses_a_conv_decoder_naming_it(registry, book):
    # the model as a run holds it, minus the training: compiling conv training costs ~25 s on 2 cores
    experiment = assemble(book.resolve("vae_conv", registry), registry)
    with pytest.raises(ExportError) as refused:
        extract(experiment, *nnx.split(experiment.model))
    assert str(refused.value).startswith("decoder 'conv' (ConvDecoder) is not an MLP: export-web runs dense layers")


def test_export_refuses_a_directory_without_a_model(tmp_path, capsys):
    assert main(["export-web", str(tmp_path / "run"), str(tmp_path / "page")]) == 2
    assert capsys.readouterr().err == f"zoo: error: {tmp_path / 'run'}: no such run directory\n"
    assert not (tmp_path / "page").exists()


@pytest.fixture(scope="module")
def unconditional_server(registry, book, tmp_path_factory):
    """A briefly trained vae_mlp served in-process on a free port."""
    run = train_run(registry, book, "vae_mlp", UNCONDITIONAL_STEPS, tmp_path_factory.mktemp("web") / "vae")
    loaded = Run.load(run, registry)
    generator = PageGenerator(loaded.experiment, loaded.graphdef, loaded.params, loaded.step)
    server = make_server(generator, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()


def test_unconditional_model_gives_a_grid_and_a_smooth_walk(unconditional_server):
    status, grid = post(unconditional_server + "api/grid", json.dumps({"temperature": 1.0, "seed": 4}).encode())
    assert status == 200 and grid["shape"] == [8, 8, 1] and np.asarray(grid["images"]).shape == (64, 64)
    assert post(unconditional_server + "api/grid", json.dumps({"seed": 4}).encode())[1] == grid
    status, walk = post(unconditional_server + "api/walk", b"{}")
    walk = np.asarray(walk["images"]).reshape(8, 8, 64)
    assert status == 200
    across = np.abs(walk[0, 0] - walk[-1, -1]).mean()  # corner to corner
    neighbours = np.abs(np.diff(walk, axis=1)).mean()  # one step along the walk
    assert across > 0.1 and neighbours < across / 3, (across, neighbours)
    status, answer = post(unconditional_server + "api/sample", json.dumps({"text": "3"}).encode())
    assert status == 400 and "unconditional" in answer["error"]


def test_unconditional_page_draws_grid_and_walk(browser, unconditional_server, tmp_path):
    browser.get(unconditional_server)
    settled(browser, 0)
    assert browser.save_screenshot(str(tmp_path / "unconditional.png"))
    grid, walk = canvas_images(browser, "#grid canvas"), canvas_images(browser, "#walk canvas")
    assert grid.shape == walk.shape == (64, 8, 8, 1)
    assert grid.reshape(64, -1).std(axis=1).mean() > 0.05 and not np.allclose(walk[0], walk[-1])
