"""Refinement inverts a known deterministic distortion, saves and loads, refines files."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.correction.refine import (
    RefinerBundle,
    RefineSettings,
    refine_file,
    sliced_wasserstein,
    train_refiner,
)
from calosurrogate.data import read_showers, write_showers


def test_sliced_wasserstein_known_cases() -> None:
    torch = pytest.importorskip("torch")
    a = torch.randn(512, 3, generator=torch.Generator().manual_seed(0))
    directions = torch.nn.functional.normalize(torch.randn(3, 8), dim=0)
    assert float(sliced_wasserstein(a, a[torch.randperm(512)], directions)) == pytest.approx(0.0, abs=1e-12)
    # a shift by s along every axis: each axis projection moves by s
    shifted = float(sliced_wasserstein(a, a + 0.5, torch.eye(3)[:, :0]))
    assert shifted == pytest.approx(0.25, rel=1e-5)


@pytest.mark.parametrize("mode", ["paired", "unpaired"])
def test_refiner_undoes_an_energy_scale(tiny_file, tiny_geometry, tmp_path, mode) -> None:
    batch = read_showers(tiny_file, tiny_geometry)
    energies = batch.incident_energies.reshape(-1)
    nominal = batch.showers.astype(np.float32)
    distorted = 0.7 * nominal  # a known, deterministic distortion of every voxel
    settings = RefineSettings(mode=mode, epochs=25, learning_rate=3e-3, batch_size=128, hidden=64)
    bundle = train_refiner((energies, distorted), (energies, nominal), tiny_geometry, settings)
    refined = bundle.refine(distorted, energies)
    before = distorted.sum(1).mean() / nominal.sum(1).mean()
    after = refined.sum(1).mean() / nominal.sum(1).mean()
    assert before == pytest.approx(0.7, rel=1e-4)
    assert after == pytest.approx(1.0, abs=0.05), after
    # saved and loaded, it refines a file to the same showers
    path = bundle.save(tmp_path / "refiner.pt")
    with pytest.raises(FileExistsError):
        bundle.save(path)
    loaded = RefinerBundle.load(path)
    source = write_showers(tmp_path / "distorted.h5", energies[:200, None], distorted[:200])
    out, seconds = refine_file(loaded, source, tmp_path / "refined.h5")
    np.testing.assert_allclose(read_showers(out, tiny_geometry).showers, refined[:200], rtol=1e-5, atol=1e-6)
    assert seconds > 0


def test_a_refiner_that_cannot_beat_the_identity_is_the_identity(tiny_file, tiny_geometry) -> None:
    # nominal = modified, paired: the identity's loss is zero and no epoch can do better
    batch = read_showers(tiny_file, tiny_geometry)
    energies, showers = batch.incident_energies.reshape(-1), batch.showers.astype(np.float32)
    settings = RefineSettings(epochs=3, learning_rate=3e-3, batch_size=128, hidden=64, voxel_weight=1.0)
    bundle = train_refiner((energies, showers), (energies, showers), tiny_geometry, settings)
    assert bundle.history[0]["epoch"] == 0 and len(bundle.history) == 4
    assert bundle.history[0]["val_loss"] == pytest.approx(0.0, abs=1e-9)
    assert all(h["val_loss"] > bundle.history[0]["val_loss"] for h in bundle.history[1:])
    read_out = np.where(showers >= bundle.scale, showers, 0.0)
    np.testing.assert_allclose(bundle.refine(showers, energies), read_out, rtol=1e-5, atol=1e-4)


def test_paired_mode_refuses_unpaired_samples(tiny_file, tiny_geometry) -> None:
    batch = read_showers(tiny_file, tiny_geometry)
    e, x = batch.incident_energies.reshape(-1), batch.showers
    with pytest.raises(ValueError, match="not paired"):
        train_refiner((e[::-1], x), (e, x), tiny_geometry, RefineSettings(epochs=1))
    with pytest.raises(ValueError, match="in pairs"):
        train_refiner((e[:10], x[:10]), (e, x), tiny_geometry, RefineSettings(epochs=1))


def test_refine_command_trains_saves_and_applies(tmp_path) -> None:
    from click.testing import CliRunner

    from calosurrogate.cli import main

    runner = CliRunner()
    for name, extra in (("nominal", []), ("cheap", ["--cheap"])):
        done = runner.invoke(main, ["simulate", "--geometry", "ds2", "--n", "300", "--seed", "4", "--quiet",
                                    "--out", str(tmp_path / f"{name}.h5"), *extra])  # fmt: skip
        assert done.exit_code == 0, done.output
    out = tmp_path / "refined.h5"
    done = runner.invoke(main, ["refine", "--nominal", str(tmp_path / "nominal.h5"), "--modified",
                                str(tmp_path / "cheap.h5"), "--out", str(out), "--epochs", "1"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert (tmp_path / "refined.refiner.pt").exists() and "ms per shower" in done.output
    again = tmp_path / "again.h5"
    done = runner.invoke(main, ["refine", "--model", str(tmp_path / "refined.refiner.pt"), "--modified",
                                str(tmp_path / "cheap.h5"), "--out", str(again)])  # fmt: skip
    assert done.exit_code == 0, done.output
    np.testing.assert_array_equal(read_showers(again).showers, read_showers(out).showers)
    both = runner.invoke(main, ["refine", "--modified", str(tmp_path / "cheap.h5"), "--out", str(tmp_path / "x.h5")])
    assert both.exit_code != 0 and "--nominal" in both.output
