"""The perf benchmark's report and `--check` (benchmarks/perf/run.py, perf_report.py): each ratio's spread
over the repeats, and a non-zero exit naming every median below its target, a failed measurement included."""

from __future__ import annotations

import json
import sys

from tests.conftest import REPO

sys.path.append(str(REPO / "benchmarks" / "perf"))  # appended: its modules never shadow an installed one
import perf_report  # noqa: E402
import run  # noqa: E402


def results(ratios: dict, is_ratios=(1.6, 1.4, 1.7), load: float = 0.5) -> dict:
    """A results.json with the given zoo / torch ratios per repeat (and plausible figures around them)."""
    side = lambda rates: {"images_per_s": rates, "peak_rss_mib": 900.0, "first_step_s": 1.0, "loop": "scan"}  # noqa: E731
    training = {
        variant: {
            "zoo": side([100.0 * r for r in values]),
            "torch": side([100.0] * len(values)),
            "ratios": list(values),
            "window": {"steps": 20},
        }
        for variant, values in ratios.items()
    }
    return {
        "environment": {
            "command": "run.py",
            "date": "2026-12-05",
            "cpu": "AMD EPYC",
            "family": "25",
            "model": "17",
            "stepping": "1",
            "cores": 2,
            "avx512": True,
            "versions": {"jax": "x"},
            "load_average_at_start": load,
            "load_average_at_end": load,
        },
        "settings": {**run.FULL, "threads": 2, "xla_flags": ""},
        "matmul_peaks": [{"numpy_gflops": 200.0, "jax_gflops": 200.0, "torch_gflops": 200.0, "size": 2048}],
        "training": training,
        "importance_sampling": {
            "zoo": {"images_per_s": [20.0 * r for r in is_ratios], "peak_rss_mib": 900.0, "first_batch_s": 4.0},
            "torch": {"images_per_s": [20.0] * len(is_ratios), "peak_rss_mib": 1000.0},
            "zoo_small_k": {"images_per_s": [100.0], "peak_rss_mib": 905.0},
            "ratios": list(is_ratios),
        },
        "training_flops_per_image": {v: 1e7 for v in ratios},
        "batch_size": {v: 128 for v in ratios},
    }


ALL_MET = {
    "perf_vae_mlp": (2.1, 1.9, 2.3),
    "perf_vae_conv_transpose": (1.0, 1.1, 0.9),  # reported, no target
    "perf_vae_conv_color": (1.6, 1.5, 1.4),
}


def test_targets_are_judged_on_the_median_with_the_spread():
    rows = {row["name"]: row for row in perf_report.target_rows(results(ALL_MET))}
    assert set(rows) == {"perf_vae_mlp", "perf_vae_conv_color", "importance_sampling"}
    assert (rows["perf_vae_mlp"]["min"], rows["perf_vae_mlp"]["median"], rows["perf_vae_mlp"]["max"]) == (1.9, 2.1, 2.3)
    assert rows["perf_vae_mlp"]["met"] and rows["perf_vae_conv_color"]["met"] and rows["importance_sampling"]["met"]


def test_check_passes_when_every_median_meets_its_target(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results(ALL_MET)))
    assert run.main(["--from-results", str(path), "--check"]) == 0
    out = capsys.readouterr()
    assert "every median ratio meets its target" in out.out
    assert "| 0.90x | **1.00x** | 1.10x | - |" in out.out  # the untargeted architecture is reported with its spread


def test_check_fails_naming_each_miss_and_each_failed_measurement(tmp_path, capsys):
    ratios = {**ALL_MET, "perf_vae_conv": (1.5, 2.5, 1.8)}  # median 1.8
    data = results(ratios, is_ratios=(1.4, 1.6, 1.45))
    data["training"]["perf_cvae_mlp"] = {"error": "exit status 1: boom"}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert run.main(["--from-results", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "perf_vae_conv median 1.80x, below its target 2.0x" in err
    assert "importance_sampling median 1.45x, below its target 1.5x" in err
    assert "perf_cvae_mlp not measured, below its target 2.0x" in err
    assert "perf_vae_mlp" not in err


def test_a_loaded_machine_is_not_judged_with_several_threads(tmp_path, capsys):
    data = results(ALL_MET, load=8.0)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    assert run.main(["--from-results", str(path), "--check"]) == 3
    out = capsys.readouterr()
    assert "The machine was loaded" in out.out
    assert "not judged: the machine was loaded" in out.err
    data["settings"]["threads"] = 1  # one thread each: judged, with a warning
    path.write_text(json.dumps(data))
    assert run.main(["--from-results", str(path), "--check"]) == 0
    assert "warning: the machine was loaded" in capsys.readouterr().err
