"""ParaFlow's crystal window through the whole pipeline: simulate, train a flow conditioned on the
incident energy and the plate's thickness and distance, save and load it, sample at a reference
file's conditions, and judge the shower shapes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from calosurrogate.cli import main
from calosurrogate.geometry import GeometryError, get_geometry
from calosurrogate.geometry.crystal import PARAFLOW, CrystalGrid
from calosurrogate.models.base import load_surrogate


def test_the_crystal_window_is_a_geometry_that_model_files_carry() -> None:
    assert get_geometry("paraflow") is PARAFLOW and PARAFLOW.n_voxels == 128
    again = CrystalGrid.from_xml_string(PARAFLOW.to_xml_string())
    assert again == PARAFLOW and again.same_binning(PARAFLOW)
    assert not PARAFLOW.same_binning(CrystalGrid("other", 8, 8))
    assert PARAFLOW.layer_slice(0) == slice(0, 128) and list(PARAFLOW.layer_offsets) == [0, 128]
    with pytest.raises(GeometryError, match="crystal-grid"):
        CrystalGrid.from_xml_string("<Bins/>")


def test_simulate_train_sample_and_judge_with_plate_conditions(tmp_path) -> None:
    runner = CliRunner()

    def calo(*args: object) -> str:
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    calo("simulate", "--geometry", "paraflow", "--n", 600, "--seed", 1, "--out", tmp_path / "train.h5", "--quiet")
    calo("simulate", "--geometry", "paraflow", "--n", 300, "--seed", 2, "--out", tmp_path / "ref.h5", "--quiet")
    calo("train", "--model", "flow", "--data", tmp_path / "train.h5", "--geometry", "paraflow",
         "--conditions", "plate_thickness,plate_distance", "--out", tmp_path / "run",
         "--set", "train.epochs=1", "--set", "model.energy_transforms=2", "--set", "model.energy_hidden=16",
         "--set", "model.shape_transforms=2", "--set", "model.shape_hidden=16")  # fmt: skip
    model = load_surrogate(tmp_path / "run" / "model.pt")
    assert model.geometry == PARAFLOW
    assert model.condition_names == ("incident_energies", "plate_thickness", "plate_distance")
    calo("sample", "--run", tmp_path / "run", "--energies", tmp_path / "ref.h5", "--out", tmp_path / "gen.h5")
    with h5py.File(tmp_path / "gen.h5") as gen, h5py.File(tmp_path / "ref.h5") as ref:
        assert gen["showers"].shape == (300, 128)
        for name in ("incident_energies", "plate_thickness", "plate_distance"):
            np.testing.assert_allclose(gen[name][:], ref[name][:], rtol=1e-6)  # each condition in its own dataset
    out = calo("evaluate", "--geometry", "paraflow", "--reference", tmp_path / "ref.h5",
               "--generated", tmp_path / "gen.h5", "--out", tmp_path / "eval")  # fmt: skip
    assert "r9" in out and (tmp_path / "eval" / "metrics.json").exists()


def _families() -> list[str]:
    from calosurrogate.models.base import REGISTRY, load_families

    load_families()
    return sorted(REGISTRY)


@pytest.mark.parametrize("family", _families())
def test_every_family_learns_and_samples_crystal_windows_with_plate_conditions(family: str) -> None:
    import torch

    from calosurrogate.models.base import build_surrogate

    names = ("incident_energies", "plate_thickness", "plate_distance")
    model = build_surrogate(family, PARAFLOW, {}, names)
    generator = torch.Generator().manual_seed(0)
    showers = torch.rand(64, 128, generator=generator) * 1000
    conditions = torch.stack([torch.full((64,), 5e4), torch.rand(64, generator=generator) + 0.5,
                              torch.rand(64, generator=generator) * 40 + 50], 1)  # fmt: skip
    # ParaFlow maps all three conditions logarithmically to [-1, 1]
    assert model.conditions_map.log_mask.tolist() == [True, True, True]
    model.fit_preprocessing(showers, conditions)
    mapped = model.conditions_map(conditions)
    assert mapped.min() >= -1 - 1e-5 and mapped.max() <= 1 + 1e-5
    loss = model.loss(showers, conditions).mean()
    loss.backward()
    assert torch.isfinite(loss)
    sampled = next(model.sample_batches(conditions.numpy().astype(np.float64), 64, "cpu", "fp32", 0))
    assert np.shape(sampled) == (64, 128) and np.all(np.isfinite(np.asarray(sampled)))


NAMES = ("incident_energies", "plate_thickness", "plate_distance")
# a 3 x 5 crystal window: small enough for a small flow to learn in seconds how the showers
# change with the plate (the full 8 x 16 window takes a training of many minutes)
SMALL_WINDOW = CrystalGrid("window-3x5", 3, 5)


@pytest.fixture(scope="module")
def small_paraflow(tmp_path_factory):
    """A small ParaFlow MAF trained briefly on the fast engine's 3 x 5 windows: (run folder, set-up)."""
    from calosurrogate.models.base import build_surrogate
    from calosurrogate.simulate.paraflow import ParaFlowSetup, simulate_paraflow_to_file
    from calosurrogate.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("paraflow")
    setup = ParaFlowSetup(window=SMALL_WINDOW)
    simulate_paraflow_to_file(4000, folder / "train.h5", seed=5, setup=setup, progress=False)
    model = build_surrogate("paraflow", SMALL_WINDOW, {"transforms": 3, "hidden": 32, "bins": 6}, NAMES)
    config = TrainConfig(epochs=10, batch_size=100, learning_rate=3e-3, threads=2)
    train(model, folder / "train.h5", folder / "run", config, progress=False)
    return folder / "run", setup


def test_a_small_model_follows_its_conditions(small_paraflow) -> None:
    """Wider showers behind a thicker, farther plate (more conversions, more bending), as in the data."""
    import torch

    from calosurrogate.metrics.crystal_shapes import crystal_shower_shapes

    model = load_surrogate(small_paraflow[0] / "model.pt")
    assert model.geometry == SMALL_WINDOW
    widths = {}
    for d, b in ((0.5, 50.0), (1.5, 90.0)):
        showers = model.sample(torch.tensor([[6e4, d, b]]).repeat(400, 1), seed=1)
        widths[d] = crystal_shower_shapes(np.asarray(showers).reshape(-1, 3, 5))["width"].mean()
    # the fast engine's mean widths there: 0.48 and 0.65 crystals
    assert widths[1.5] > widths[0.5] + 0.05, widths


def test_calo_infer_fits_plate_conditions_and_reports_calibration(small_paraflow, tmp_path) -> None:
    import json

    from calosurrogate.simulate.paraflow import simulate_paraflow_to_file

    run, setup = small_paraflow
    fixed = {"plate_thickness": 1.2, "plate_distance": 60.0}
    simulate_paraflow_to_file(60, tmp_path / "fixed.h5", seed=9, fixed=fixed, setup=setup, progress=False)
    runner = CliRunner()
    result = runner.invoke(main, ["infer", "--run", str(run), "--data", str(tmp_path / "fixed.h5"), "--sample-size", "30",
                                  "--out", str(tmp_path / "infer.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "infer.json").read_text())
    pe = record["pseudo_experiments"]
    assert pe["samples"] == 2 and pe["truth"] == [[pytest.approx(1.2), pytest.approx(60.0)]] * 2
    # a sample whose Hessian is not positive definite (a tiny model, 30 photons: one of the two on
    # some CPUs) quotes no error (NaN) and stays out of the summary; the others quote positive ones
    errors = np.asarray(pe["errors"])
    finite = np.isfinite(errors).all(1)
    assert finite.any() and np.all(errors[finite] > 0) and np.all(np.isnan(errors[~finite]))
    assert 1 <= pe["converged"] <= finite.sum() and "coverage" in pe["summary"]["plate_thickness"]
    assert sum(pe["converged_each"]) == pe["converged"] and not any(np.array(pe["converged_each"]) & ~finite)
    sandwich = np.asarray(pe["sandwich_errors"])
    assert np.all(sandwich[finite] > 0) and "coverage" in pe["summary"]["plate_thickness"]["sandwich"]
    # one sample, the whole file; an existing --out is kept without --force
    result = runner.invoke(main, ["infer", "--run", str(run), "--data", str(tmp_path / "fixed.h5"),
                                  "--free", "plate_distance", "--out", str(tmp_path / "infer.json")])  # fmt: skip
    assert result.exit_code != 0 and "--force" in result.output
    result = runner.invoke(
        main, ["infer", "--run", str(run), "--data", str(tmp_path / "fixed.h5"), "--free", "plate_distance"]
    )
    assert result.exit_code == 0 and "plate_distance = " in result.output and "sandwich ±" in result.output, (
        result.output
    )
    result = runner.invoke(main, ["infer", "--run", str(run), "--data", str(tmp_path / "fixed.h5"), "--free", "width"])
    assert result.exit_code != 0 and "no ['width']" in result.output


def test_calo_design_moves_the_plate_where_a_user_loss_wants_it(small_paraflow, tmp_path) -> None:
    """A loss that rewards wide showers sends the plate to the far end of its range (widths grow
    with the distance); one that rewards narrow showers, to the near end."""
    import json

    run, _ = small_paraflow
    (tmp_path / "losses.py").write_text(
        "import numpy as np\n"
        "def _width(showers):\n"
        "    images = showers.reshape(len(showers), 3, 5)\n"
        "    y = np.arange(5) - (images.sum(1) * np.arange(5)).sum(1, keepdims=True) / images.sum((1, 2))[:, None]\n"
        "    return (images.sum(1) * np.abs(y)).sum(1) / images.sum((1, 2))\n"
        "def wide(showers):\n    return -_width(showers)\n"
        "def narrow(showers):\n    return _width(showers)\n"
    )
    runner = CliRunner()
    chosen = {}
    for name in ("wide", "narrow"):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(main, ["design", "--run", str(run), "--objective", f"{tmp_path / 'losses.py'}:{name}",
                                      "--condition", "plate_thickness=1.5", "--n", "400", "--rounds", "6",
                                      "--out", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        chosen[name] = json.loads(out.read_text())["values"][0]
    assert chosen["wide"] > 80.0 and chosen["narrow"] < 60.0, chosen
    result = runner.invoke(main, ["design", "--run", str(run), "--objective", f"{tmp_path / 'losses.py'}:wide"])
    assert result.exit_code != 0 and "plate_thickness" in result.output  # held nowhere: no value to use
    result = runner.invoke(main, ["design", "--run", str(run), "--objective", f"{tmp_path / 'losses.py'}:tall",
                                  "--condition", "plate_thickness=1.0"])  # fmt: skip
    assert result.exit_code != 0 and "no function 'tall'" in result.output


def test_calo_simulate_holds_out_a_region_and_draws_from_other_ranges(tmp_path) -> None:
    runner = CliRunner()
    region = "plate_thickness=0.9:1.1,plate_distance=65:75"
    args = ["simulate", "--geometry", "paraflow", "--n", "400", "--out", str(tmp_path / "a.h5"), "--quiet"]
    assert runner.invoke(main, [*args, "--hold-out", region]).exit_code == 0
    with h5py.File(tmp_path / "a.h5") as f:
        d, b = f["plate_thickness"][:, 0], f["plate_distance"][:, 0]
        assert not np.any((d >= 0.9) & (d <= 1.1) & (b >= 65) & (b <= 75)) and "plate_distance" in f.attrs["held_out"]
    inside = ["simulate", "--geometry", "paraflow", "--n", "50", "--out", str(tmp_path / "b.h5"), "--quiet",
              "--condition", "plate_thickness=0.9:1.1", "--condition", "plate_distance=70"]  # fmt: skip
    assert runner.invoke(main, inside).exit_code == 0
    with h5py.File(tmp_path / "b.h5") as f:
        assert f["plate_thickness"][:].min() >= 0.9 and f["plate_thickness"][:].max() <= 1.1
        assert np.all(f["plate_distance"][:] == 70)
    bad = runner.invoke(main, [*args[:-2], str(tmp_path / "c.h5"), "--hold-out", "plate_thickness=1"])
    assert bad.exit_code != 0 and "NAME=LOW:HIGH" in bad.output
