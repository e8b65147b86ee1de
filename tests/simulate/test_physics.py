"""The simulator must show the physics a surrogate has to learn (issue 2, section 4)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from calosurrogate.data import read_showers
from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer, LayerStack
from calosurrogate.simulate import ShowerSimulator, get_detector, simulate_to_file
from calosurrogate.simulate.detectors import uncalibrated

DS2 = get_detector("ds2")
SIM = ShowerSimulator(DS2)


def _layer_energies(showers: np.ndarray, detector=DS2) -> np.ndarray:
    return np.add.reduceat(showers, detector.geometry.layer_offsets[:-1], axis=1)


@pytest.fixture(scope="module")
def fixed_energy_samples() -> dict[float, np.ndarray]:
    return {e: SIM.sample(600, f"fixed:{e}", seed=3)[1] for e in (1e3, 1e4, 1e5, 1e6)}


def test_reproducible_for_a_seed() -> None:
    e1, s1 = SIM.sample(300, "log-uniform:1GeV:1TeV", seed=7)
    e2, s2 = SIM.sample(300, "log-uniform:1GeV:1TeV", seed=7)
    e3, _ = SIM.sample(300, "log-uniform:1GeV:1TeV", seed=8)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(e1, e2)
    assert not np.array_equal(e1, e3)


def test_response_near_nominal_above_10_gev(fixed_energy_samples) -> None:
    for energy in (1e4, 1e5, 1e6):
        ratio = fixed_energy_samples[energy].sum(axis=1) / energy
        assert abs(ratio.mean() / DS2.nominal_response - 1) < 0.05, energy


def test_resolution_falls_as_inverse_sqrt_energy(fixed_energy_samples) -> None:
    energies = np.array(sorted(fixed_energy_samples))
    resolution = [fixed_energy_samples[e].sum(1).std() / fixed_energy_samples[e].sum(1).mean() for e in energies]
    slope = np.polyfit(np.log(energies), np.log(resolution), 1)[0]
    assert -0.6 <= slope <= -0.35


def test_mean_depth_grows_one_x0_per_efold(fixed_energy_samples) -> None:
    energies = np.array(sorted(fixed_energy_samples))
    depth = []
    for e in energies:
        layers = _layer_energies(fixed_energy_samples[e])
        depth.append(((layers * DS2.stack.centres).sum(1) / layers.sum(1)).mean())
    slope = np.polyfit(np.log(energies), depth, 1)[0]
    assert 0.7 <= slope <= 1.3


def test_most_energy_within_one_moliere_radius() -> None:
    # A one-layer-per-ds2-layer binning with its first radial edge exactly at R_M.
    rm = DS2.stack.material.moliere_radius_mm
    layer = (rm * 0, rm, 10 * rm)
    geometry = CylindricalGeometry(
        "rm-test", "electron", tuple(CylindricalLayer(i, layer, 1) for i in range(DS2.geometry.n_layers))
    )
    detector = dataclasses.replace(DS2, name="rm-test", geometry=geometry)
    _, showers = ShowerSimulator(detector).sample(400, "log-uniform:1GeV:1TeV", seed=5)
    inside = showers[:, 0::2].sum(1) / showers.sum(1)
    assert inside.mean() >= 0.8


def test_correlated_longitudinal_fluctuations(fixed_energy_samples) -> None:
    layers = _layer_energies(fixed_energy_samples[1e5])
    corr = np.corrcoef(layers[:, :30].T)
    neighbours = [corr[i, i + 1] for i in range(3, 20)]
    assert np.mean(neighbours) > 0.3 and min(neighbours) > 0
    assert corr[2, 25] < -0.2 and corr[3, 22] < 0


def test_sparsity_like_ds2_and_falling_with_energy(fixed_energy_samples) -> None:
    _, showers = SIM.sample(2000, "log-uniform:1GeV:1TeV", seed=11)
    sparsity = (showers == 0).mean()
    assert 0.6 <= sparsity <= 0.9
    by_energy = [(fixed_energy_samples[e] == 0).mean() for e in sorted(fixed_energy_samples)]
    assert all(a > b for a, b in itertools.pairwise(by_energy))


def test_readout_threshold_applied() -> None:
    _, showers = SIM.sample(100, "fixed:2GeV", seed=1)
    nonzero = showers[showers > 0]
    assert nonzero.min() >= DS2.readout_threshold_mev


def test_ds1_photons_discrete_energies_and_response() -> None:
    detector = get_detector("ds1-photons")
    energies, showers = ShowerSimulator(detector).sample(1500, "ds1", seed=2)
    assert set(np.unique(energies)) <= set(2.0 ** np.arange(8, 23))
    assert showers.shape == (1500, 368)
    high = energies[:, 0] >= 16384
    ratio = showers[high].sum(1) / energies[high, 0]
    assert abs(ratio.mean() / detector.nominal_response - 1) < 0.05
    layers = _layer_energies(showers, detector)
    assert np.argmax(layers.mean(0)) == 2  # the middle EM sampling holds most of the energy


def test_photons_start_later_than_electrons() -> None:
    electrons = DS2
    photons = dataclasses.replace(DS2, particle="photon")
    depth = []
    for det in (electrons, photons):
        layers = _layer_energies(ShowerSimulator(det).sample(500, "fixed:20GeV", seed=4)[1])
        depth.append(((layers * det.stack.centres).sum(1) / layers.sum(1)).mean())
    assert depth[1] - depth[0] == pytest.approx(9 / 7, abs=0.4)


def test_pions_refused_clearly() -> None:
    with pytest.raises(ValueError, match="electromagnetic showers only"):
        get_detector("ds1-pions")


def test_stack_must_match_geometry() -> None:
    with pytest.raises(ValueError, match="layers in the stack"):
        dataclasses.replace(DS2, stack=LayerStack.uniform(DS2.stack.material, 3, 1.0))


def test_simulate_to_file_streams_and_records_provenance(tmp_path) -> None:
    path = simulate_to_file(DS2, 600, tmp_path / "sim.h5", seed=9, progress=False)
    batch = read_showers(path, DS2.geometry)
    _, direct = SIM.sample(600, DS2.default_spectrum, seed=9)
    np.testing.assert_allclose(batch.showers, direct.astype("float32"))
    import h5py

    with h5py.File(path) as f:
        assert "not Geant4" in f.attrs["generator"]
        assert f.attrs["seed"] == 9
    with pytest.raises(FileExistsError):
        simulate_to_file(DS2, 10, path, progress=False)


def test_ds2_ships_coefficients_fitted_to_geant4_and_the_published_ones_stay_reachable() -> None:
    from calosurrogate.simulate.detectors import uncalibrated
    from calosurrogate.simulate.gflash import PUBLISHED

    before = uncalibrated(DS2)
    assert DS2.coefficients != PUBLISHED and before.coefficients == PUBLISHED
    assert uncalibrated(get_detector("ds1-photons")) == get_detector("ds1-photons")  # never calibrated
    response = {}
    for name, detector in (("fitted", DS2), ("published", before)):
        energies, showers = ShowerSimulator(detector).sample(400, "fixed:10GeV", seed=5)
        response[name] = (showers.sum(1) / energies.ravel()).mean()
    # Geant4's stored E_tot / E_inc for this stack is 0.953 at 10 GeV (the geant4 engine,
    # benchmarks/results/calibration_ds2.json); the published coefficients gave 3.5% more
    assert abs(response["fitted"] / 0.953 - 1) < 0.015
    assert response["published"] / 0.953 - 1 > 0.025


def test_cheap_mode_deposits_the_same_energy_in_fewer_larger_spots() -> None:
    from calosurrogate.simulate import ShowerSimulator, get_detector
    from calosurrogate.simulate.detectors import cheap

    detector = get_detector("ds2")
    e_nom, nominal = ShowerSimulator(detector).sample(400, "log-uniform:10GeV:20GeV", seed=5)
    e_cheap, cheaper = ShowerSimulator(cheap(detector)).sample(400, "log-uniform:10GeV:20GeV", seed=5)
    np.testing.assert_array_equal(e_nom, e_cheap)  # paired: the same primaries
    ratio_nom, ratio_cheap = nominal.sum(1) / e_nom[:, 0], cheaper.sum(1) / e_cheap[:, 0]
    assert ratio_cheap.mean() == pytest.approx(ratio_nom.mean(), rel=0.02)
    assert ratio_cheap.std() > 1.2 * ratio_nom.std()  # coarser sampling: a worse resolution
    assert (cheaper > 0).sum(1).mean() < 0.8 * (nominal > 0).sum(1).mean()
    with pytest.raises(ValueError, match="positive"):
        cheap(detector, 0.0)


def test_profile_fluctuations_move_energy_but_keep_the_median_showers_contained_share() -> None:
    """Depth, length and width fluctuate shower by shower (voxels differ); the share of the energy
    inside the binning does not (Geant4's constant term is 0.1%), even with a wide width spread."""
    wide = dataclasses.replace(
        DS2, lateral_spread=0.3, coefficients=dataclasses.replace(DS2.coefficients, entry_deposit_mev=0.0)
    )
    simulator = ShowerSimulator(wide)
    energies = np.full(400, 1e6)
    voxels, layers = simulator.mean_showers(energies, np.random.default_rng(4))
    totals = voxels.sum(1)
    assert totals.std() / totals.mean() < 1e-3
    assert np.median(voxels.std(0) / voxels.mean(0).clip(1e-9)) > 0.1  # the shapes still fluctuate
    # the held share is the median shower's, read off a table in ln E (here between its points)
    mat = wide.stack.material
    from calosurrogate.simulate.gflash import median_longitudinal_parameters

    for energy in (3.3e3, 4.7e5):
        t, a = median_longitudinal_parameters(
            np.array([energy / 1e3]), mat.z_eff, mat.critical_energy_mev, wide.coefficients
        )
        voxels_1, layers_1 = simulator._profile(np.array([energy]), t, a, np.zeros(1), np.ones(1))
        held = voxels_1.sum(1) / layers_1.sum(1)
        np.testing.assert_allclose(simulator._median_containment(np.array([energy])), held, rtol=2e-4)
    assert np.all(voxels.reshape(400, wide.geometry.n_layers, -1).sum(2) <= layers + 1e-9)
    # only where Geant4 showed it: the uncalibrated engine and ds1-photons' stack lose what they lose
    unheld = (
        ShowerSimulator(dataclasses.replace(wide, hold_containment=False))
        .mean_showers(energies, np.random.default_rng(4))[0]
        .sum(1)
    )
    assert unheld.std() / unheld.mean() > 3e-3
    assert not uncalibrated(DS2).hold_containment and not get_detector("ds1-photons").hold_containment
