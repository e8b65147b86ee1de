"""ParaFlow's evaluation on files of the fast engine: same set-up against itself, and against a
set-up without the field (known answers: near the floor, and clearly separated)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from calosurrogate.evaluation.crystal import evaluate_crystal_files
from calosurrogate.report.crystal import write_crystal_report
from calosurrogate.simulate.paraflow import ParaFlowSetup, simulate_paraflow_to_file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("paraflow")
    reference = simulate_paraflow_to_file(3000, d / "reference.h5", seed=1, progress=False)
    same = simulate_paraflow_to_file(3000, d / "same.h5", seed=2, progress=False)
    no_field = dataclasses.replace(ParaFlowSetup(), field_tesla=1e-3)
    other = simulate_paraflow_to_file(3000, d / "other.h5", seed=3, setup=no_field, progress=False)
    return reference, same, other


def test_the_same_set_up_sits_at_its_floor_and_another_is_separated(files) -> None:
    reference, same, other = files
    alike = evaluate_crystal_files(reference, same)
    unlike = evaluate_crystal_files(reference, other)
    for shape in ("width", "r9", "brightest"):
        s = alike["separation"]["all"][shape]
        assert s["value"] < 3 * s["floor"] + 3 * s["error"]
    for shape in ("width", "r9", "n_clusters"):
        # without the field the converted pair lands together: narrower showers, far beyond the floor
        s = alike["separation"]["all"][shape]
        assert unlike["separation"]["all"][shape]["value"] > 5 * s["floor"] + 5 * s["error"]
    # slices of both conditions, each with its floor
    assert {"plate_thickness 0.5-0.75", "plate_distance 80-90"} <= set(alike["separation"])
    assert (
        unlike["separation"]["plate_distance 80-90"]["width"]["value"]
        > unlike["separation"]["plate_distance 50-60"]["width"]["value"]
    )
    grid = unlike["mean_shape_grid"]["width"]
    assert len(grid["reference"]) == 4 and len(grid["reference"][0]) == 4
    assert grid["largest_relative_difference"] > 2 * alike["mean_shape_grid"]["width"]["largest_relative_difference"]


def test_the_report_is_written_once_with_its_plots(files, tmp_path) -> None:
    reference, same, _ = files
    result = evaluate_crystal_files(reference, same, n_max=500)
    assert result["showers"] == {"reference": 500, "generated": 500}
    hist = result["histograms"]["width"]
    assert sum(hist["reference"]) + hist["reference_outside"] == 500 and len(hist["bins"]) == len(hist["generated"]) + 1
    files = write_crystal_report(result, tmp_path / "eval")
    assert json.loads(files["metrics.json"].read_text())["separation"]["all"]["r9"]["floor"] >= 0
    page = files["report.html"].read_text()
    assert page.count("data:image/png;base64,") == 4 and "R9" in page
    assert all(files[name].stat().st_size > 10_000 for name in ("shapes.png", "shape_grids.png", "average_image.png"))
    assert "| R9 |" in files["summary.md"].read_text()
    with pytest.raises(FileExistsError):
        write_crystal_report(result, tmp_path / "eval")
