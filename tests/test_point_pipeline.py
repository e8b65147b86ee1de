"""ild-ecal end to end: simulate, train CaloClouds, sample, evaluate; the evaluation's known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from calosurrogate.cli import main
from calosurrogate.data.points import ENERGY, PointClouds, read_point_clouds
from calosurrogate.evaluation.points import evaluate_point_clouds
from calosurrogate.geometry import ild_ecal
from calosurrogate.simulate.points import PointShowerSimulator


@pytest.fixture(scope="module")
def reference() -> PointClouds:
    return PointShowerSimulator(ild_ecal()).sample(600, "uniform:10GeV:90GeV", seed=7)


def test_a_sample_judged_against_itself_sits_exactly_at_its_floor(reference) -> None:
    result = evaluate_point_clouds(reference, reference, ild_ecal())
    for name, j in result.jsd.items():
        assert j["value"] == pytest.approx(j["floor"]), name
    assert result.angles["all"]["value"] == pytest.approx(result.angles["all"]["floor"])


def test_a_different_sample_is_separated(reference) -> None:
    # the same showers with every energy doubled and the points spread 1.5 times wider
    other = PointClouds(reference.incident_energies, reference.directions, reference.entry_points,
                        reference.offsets, reference.points.copy())  # fmt: skip
    other.points[:, ENERGY] *= 2
    other.points[:, :2] *= 1.5
    result = evaluate_point_clouds(reference, other, ild_ecal())
    for name in ("cell_energy", "energy_sum", "radial_energy", "radial_occupancy"):
        assert result.jsd[name]["value"] > result.jsd[name]["floor"] + 0.1, name
    # the longitudinal profile is untouched
    assert result.jsd["layer_energy"]["value"] < result.jsd["layer_energy"]["floor"] + 0.05


def test_simulate_train_sample_evaluate(tmp_path) -> None:
    runner = CliRunner()

    def calo(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    calo("simulate", "--geometry", "ild-ecal", "--n", "300", "--out", str(tmp_path / "data.h5"), "--quiet")
    calo(
        "train",
        "--model",
        "caloclouds",
        "--data",
        str(tmp_path / "data.h5"),
        "--out",
        str(tmp_path / "run"),
        "--set",
        "model.hidden=16",
        "--set",
        "model.flow_hidden=16",
        "--set",
        "model.flow_transforms=2",
        "--set",
        "train.max_steps=20",
        "--set",
        "train.calibration_showers=100",
        "--set",
        "train.points_per_batch=512",
    )
    log = json.loads((tmp_path / "run" / "train.json").read_text())["log"]
    assert [row["stage"] for row in log if row["step"] == 20] == ["showerflow", "teacher", "student"]
    out = calo("sample", "--run", str(tmp_path / "run"), "--energies", str(tmp_path / "data.h5"), "--n", "50",
               "--out", str(tmp_path / "gen.h5"))  # fmt: skip
    assert "50 point-cloud showers" in out
    generated, data = read_point_clouds(tmp_path / "gen.h5"), read_point_clouds(tmp_path / "data.h5", 0, 50)
    np.testing.assert_array_equal(generated.incident_energies, data.incident_energies)
    np.testing.assert_array_equal(generated.directions, data.directions)
    teacher = calo("sample", "--run", str(tmp_path / "run"), "--n", "20", "--energies", "fixed:50GeV", "--steps", "2",
                   "--out", str(tmp_path / "teacher.h5"))  # fmt: skip
    assert "20 point-cloud showers" in teacher
    assert np.all(read_point_clouds(tmp_path / "teacher.h5").incident_energies == 50e3)
    out = calo("evaluate", "--geometry", "ild-ecal", "--reference", str(tmp_path / "data.h5"), "--generated",
               str(tmp_path / "gen.h5"), "--out", str(tmp_path / "ev"), "--cell-size", "10")  # fmt: skip
    assert "Report:" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["settings"]["cell_mm"] == 10.0 and set(metrics["jsd"]) >= {"cell_energy", "cog_z"}
    assert (tmp_path / "ev" / "observables.png").read_bytes()[:4] == b"\x89PNG"
    # a smaller student distilled from the run's teacher, ShowerFlow and codings taken as they are
    calo("train", "--model", "caloclouds", "--data", str(tmp_path / "data.h5"), "--out", str(tmp_path / "small"),
         "--set", "model.hidden=16", "--set", "model.flow_hidden=16", "--set", "model.flow_transforms=2",
         "--set", "model.student_hidden=8", "--set", "model.student_layers=1", "--set", "train.max_steps=5",
         "--set", "train.calibration_showers=50", "--set", "train.points_per_batch=256",
         "--set", f"train.from_run={tmp_path / 'run'}")  # fmt: skip
    small = json.loads((tmp_path / "small" / "train.json").read_text())["log"]
    assert [row["stage"] for row in small if row["step"] == 5] == ["student"]
    teacher_state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    small_state = torch.load(tmp_path / "small" / "model.pt", weights_only=True)["state_dict"]
    assert torch.equal(small_state["teacher.net.0.weight"], teacher_state["teacher.net.0.weight"])
    assert small_state["student.net.0.weight"].shape[0] == 8
    # a new ShowerFlow on the run's teacher and student
    calo("train", "--model", "caloclouds", "--data", str(tmp_path / "data.h5"), "--out", str(tmp_path / "flow"),
         "--set", "model.hidden=16", "--set", "model.flow_hidden=16", "--set", "model.flow_transforms=2",
         "--set", "train.max_steps=5", "--set", "train.calibration_showers=50",
         "--set", f"train.from_run={tmp_path / 'run'}", "--set", "train.retrain=[showerflow]")  # fmt: skip
    flow_log = json.loads((tmp_path / "flow" / "train.json").read_text())["log"]
    assert [row["stage"] for row in flow_log if row["step"] == 5] == ["showerflow"]
    flow_state = torch.load(tmp_path / "flow" / "model.pt", weights_only=True)["state_dict"]
    assert all(
        torch.equal(flow_state[k], v) for k, v in teacher_state.items() if k.startswith(("teacher.", "student."))
    )
    retrained = [
        k for k, v in teacher_state.items() if k.startswith("showerflow.") and not torch.equal(flow_state[k], v)
    ]
    assert bool(flow_state["distilled"]) and retrained
    # the one-step sampling as one TorchScript file, equal to eager sampling on the same noise
    out = calo("export", "--run", str(tmp_path / "run"), "--format", "torchscript")
    assert "largest relative difference to eager sampling 0.0e+00" in out
    exported = torch.jit.load(str(tmp_path / "run" / "model.ts.pt"))
    conditions = torch.tensor([[30e3, 0.0, 0.0, 1.0], [60e3, 0.2, -0.1, 0.97]])
    flow_features = json.loads((tmp_path / "run" / "model.ts.pt.json").read_text())["inputs"]["flow_noise"][1]
    assert flow_features == 2 + 2 * 30 + 2  # counts, energies, per-layer shares, centre of gravity
    points, offsets = exported(conditions, torch.randn(2, flow_features), torch.randn(40_000, 4))
    assert offsets[0] == 0 and offsets[-1] == len(points) and torch.all(points[:, 3] >= 0) and points[:, 3].sum() > 0
    assert torch.all((points[:, 2] >= 0) & (points[:, 2] < 30))
    again = runner.invoke(main, ["train", "--model", "caloclouds", "--data", str(tmp_path / "data.h5"), "--out",
                                 str(tmp_path / "run")])  # fmt: skip
    assert again.exit_code != 0 and "--force" in again.output
