"""`zoo export-web RUN DIR`: a static page that runs the model's generative path in the browser, no server.

DIR gets index.html, style.css, app.js, writing.js (the server's rules for what a
typed line writes, in JavaScript), decoder.js (the in-browser model) and
model.js: a manifest and the weights, base64-embedded so the page works from
file:// (Chromium will not fetch() a local file). Kernels are int8 with one
symmetric scale per tensor, biases float32. What quantisation costs is
measured with the page's own arithmetic (zoo.web.browser_model) and written, with
the page's size, to DIR/export.json.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from zoo.evaluation import classifier
from zoo.web.browser_model import BrowserModel, Network, dequantise, extract, quantise
from zoo.errors import RunDirectoryError
from zoo.web.generation import page_info, walk_basis
from zoo.web.serve import BACKEND_MARK, web_asset

COPIED_FILES = ("style.css", "app.js", "writing.js", "decoder.js")
PAGE_FILES = ("index.html", *COPIED_FILES, "model.js")
REPORT_FILE = "export.json"
BACKEND_SCRIPTS = (
    '<script src="model.js"></script>\n<script src="writing.js"></script>\n<script src="decoder.js"></script>'
)


def pack(model: BrowserModel) -> tuple[bytes, dict[str, Any]]:
    """The weights as one little-endian blob (int8 kernels, float32 biases) and where each lies in it."""
    blob, specs = bytearray(), {}
    for name, layer in model.tensors():
        q, scale = quantise(layer.kernel)
        kernel = {"dtype": "int8", "shape": list(q.shape), "scale": scale, "offset": len(blob)}
        blob += q.tobytes()
        blob += bytes(-len(blob) % 4)  # a Float32Array view must start on a multiple of 4
        bias = {"dtype": "float32", "shape": list(layer.bias.shape), "offset": len(blob)}
        blob += layer.bias.astype("<f4").tobytes()
        specs[name] = {"kernel": kernel, "bias": bias}
    return bytes(blob), specs


def network_spec(network: Optional[Network], prefix: str) -> Optional[dict[str, Any]]:
    """How the manifest describes a network: tensor names of its layers and heads, and its activation."""
    if network is None:
        return None
    return {
        "layers": [f"{prefix}.layers.{i}" for i in range(len(network.layers))],
        "activation": network.activation,
        "heads": {name: f"{prefix}.{name}" for name in network.heads},
    }


def manifest(info: dict[str, Any], model: BrowserModel, specs: dict[str, Any], walk: Optional[dict]) -> dict[str, Any]:
    """Everything decoder.js needs besides the weights."""
    prior = network_spec(model.prior, "prior")
    if prior is not None:
        prior["fixed_scale"] = model.fixed_scale
    return {
        **info,
        "decoder": network_spec(model.decoder, "decoder"),
        "prior": prior,
        "mean": model.mean,
        "params_per_dim": model.params_per_dim,
        "condition_size": model.condition_size,
        "tensors": specs,
        "walk": walk,
    }


def check_output_dir(out: Path) -> None:
    """Refuse to write into a file, or into a directory holding anything but an earlier export."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{out} is a file; export-web writes a directory")
    ours = set(PAGE_FILES) | {REPORT_FILE}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours) if out.is_dir() else []
    if others:
        raise RunDirectoryError(
            f"{out} already holds other files ({', '.join(others[:3])}); choose a new or empty directory"
        )


def write_page(out: Path, model_script: str) -> dict[str, int]:
    """Write the page's files; returns each file's size in bytes."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {"index.html": web_asset("index.html").replace(BACKEND_MARK, BACKEND_SCRIPTS), "model.js": model_script}
    texts.update({name: web_asset(name) for name in COPIED_FILES})
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    return {name: (out / name).stat().st_size for name in PAGE_FILES}


def quantisation_cost(
    experiment,
    model: BrowserModel,
    quantised: BrowserModel,
    classifier_path: Path,
    per_class: int,
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Class accuracy of generated samples (float and int8 weights, same noise) and the largest output changes."""
    dataset = experiment.dataset
    classes = model.condition_size
    labels = np.repeat(np.arange(classes), per_class) if classes else np.zeros(per_class * 10, int)
    c = np.eye(classes)[labels] if classes else None
    noise = np.random.default_rng(seed).standard_normal((len(labels), model.latent_dim))
    loc, scale = model.prior_moments(c, len(labels))
    z = loc + scale * noise
    images = {name: m.sample(noise, c) for name, m in (("float", model), ("int8", quantised))}
    cost: dict[str, Any] = {
        "samples": len(labels),
        "max_abs_decoder_output_difference": float(np.max(np.abs(model.decode(z, c) - quantised.decode(z, c)))),
        "max_abs_image_difference": float(np.max(np.abs(images["float"] - images["int8"]))),
    }
    for name in images:
        cost[f"class_accuracy_{name}"] = None
    if classes:
        weights = classifier.cached(dataset, classifier_path, progress=progress)
        for name, flat in images.items():
            batch = np.clip(flat, 0.0, 1.0).reshape((len(labels),) + tuple(dataset.image_shape))
            cost[f"class_accuracy_{name}"] = classifier.accuracy(weights, batch.astype(np.float32), labels)
    return cost


def export_web(
    run: Path,
    out: Path,
    registry,
    *,
    per_class: int = 100,
    seed: int = 0,
    data_dir: Optional[str] = None,
    classifier_path: Optional[Path] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the static page for a trained run into `out`; returns (and writes) the report."""
    from zoo.progress import stage
    from zoo.evaluation.trained_run import Run

    run, out = Path(run), Path(out)
    if progress:
        stage(f"loading {run}")
    loaded = Run.load(run, registry, data_dir)
    experiment, graphdef, params, step = loaded.experiment, loaded.graphdef, loaded.params, loaded.step
    info = page_info(experiment, step)  # refuses conditions the page cannot take
    model = extract(experiment, graphdef, params)
    check_output_dir(out)
    quantised = model.with_kernels(dequantise)
    blob, specs = pack(model)
    walk = walk_basis(experiment, graphdef, params) if info["kind"] == "unconditional" else None
    script = (
        f"window.ZOO_MODEL = {json.dumps(manifest(info, model, specs, walk))};\n"
        f'window.ZOO_WEIGHTS = "{base64.b64encode(blob).decode("ascii")}";\n'
    )
    sizes = write_page(out, script)
    classifier_path = Path(classifier_path or run / "classifiers" / f"{experiment.dataset.name}.npz")
    float_bytes = sum(4 * (layer.kernel.size + layer.bias.size) for _, layer in model.tensors())
    report = {
        "run": str(run),
        "variant": info["variant"],
        "step": step,
        "dir": str(out),
        "page_bytes": sum(sizes.values()),
        "files": sizes,
        "weights_bytes_float32": float_bytes,
        "weights_bytes_int8": len(blob),
        "quantisation": "int8 kernels, one symmetric scale per tensor; float32 biases",
        **quantisation_cost(experiment, model, quantised, classifier_path, per_class, seed, progress),
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
