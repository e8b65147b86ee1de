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
