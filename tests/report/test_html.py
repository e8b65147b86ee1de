"""The report is a web page: open it in headless Chromium and check that it renders."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.report import write_evaluation
from calosurrogate.simulate import get_detector, simulate_to_file

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


N_LAYERS = 6


def _small_ds2(folder):
    """ds2's material and a regular binning of its own with a few layers: every figure the report
    draws for ds2, at a fraction of the drawing time of 45 layers."""
    import dataclasses

    from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer, LayerStack

    edges = (0.0, 4.0, 8.0, 13.0, 20.0, 30.0, 45.0, 70.0, 120.0)
    layers = tuple(CylindricalLayer(i, edges, 16) for i in range(N_LAYERS))
    geometry = CylindricalGeometry("small-ds2", "electron", layers)
    base = get_detector("ds2")
    stack = LayerStack.uniform(base.stack.material, N_LAYERS, 7.0)
    return dataclasses.replace(base, name="small-ds2", geometry=geometry, stack=stack, profile_tables=None)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    detector = _small_ds2(folder)
    ref = simulate_to_file(detector, 1200, folder / "ref.h5", seed=1, progress=False)
    gen = simulate_to_file(detector, 1200, folder / "gen.h5", seed=2, progress=False)
    settings = EvaluationSettings.fast(
        classifier=ClassifierSettings(hidden=32, epochs=2, batch_size=200),
        fpd_min_samples=500, fpd_max_samples=1000, fpd_num_batches=2, kpd_batch_size=500, kpd_num_batches=3,
        progress=False,
    )  # fmt: skip
    result = evaluate_files(ref, gen, detector.geometry, settings)
    return write_evaluation(result, detector.geometry, folder / "eval")


def test_every_figure_is_written(report) -> None:
    pngs = [name for name in report if name.endswith(".png")]
    for expected in ("etot_einc.png", "response.png", "etot_einc_per_energy.png", "voxel_energy.png",
                     "separation_overview.png", "mean_showers.png", "profiles.png", "layer_correlations.png",
                     "cfd_maps.png", "E_layer.png", "sparsity.png"):  # fmt: skip
        assert expected in pngs
    for name in pngs:
        assert report[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every observable, the E_tot/E_inc of each incident-energy bin included, has its floor
    import json

    assert json.loads(report["metrics.json"].read_text())["verdict"]["not_judged"] == []
    # every layer has a figure of its own, behind the selector
    assert sorted(p.name for p in report["layers"].iterdir()) == [f"layer_{i:02d}.png" for i in range(N_LAYERS)]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test.sh installs it where it can)")
def test_report_renders_in_chromium(report, tmp_path) -> None:
    html_path = report["report.html"]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    n_images = len([name for name in report if name.endswith(".png")]) + len(list(report["layers"].iterdir()))
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert match, "the page's load check did not run"
    assert match.group(1) == match.group(2) == str(n_images)
    metrics_table = re.search(r'<table id="metrics">.*?</table>', dom, re.S).group(0)
    assert metrics_table.count("<tr>") >= 6 and "FPD x 1e3" in metrics_table
    assert "CFD voxel" in metrics_table and "PRDC coverage" in metrics_table
    # the layer selector shows exactly one layer's figure: the selected one
    selected = re.search(r'<select id="layer-select">.*?<option value="(\d+)" selected(?:="")?>', dom, re.S).group(1)
    shown = re.findall(r'<figure data-layer="(\d+)" style="display: inline-block;?"', dom)
    assert shown == [selected]
    assert len(re.findall(r'<figure data-layer="\d+"', dom)) == N_LAYERS
    assert re.search(r'<table id="separation">', dom)
    verdict = re.search(r'<div class="verdict ([a-z-]+)" id="verdict"><b>Verdict: (\w+)\.</b>', dom)
    assert verdict and verdict.group(1) in ("within-its-floor", "close", "separable")
    assert dom.index('id="verdict"') < dom.index('id="metrics"')  # the first thing on the page
    screenshot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={screenshot}", "--window-size=1300,2400", html_path.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert screenshot.stat().st_size > 20_000
