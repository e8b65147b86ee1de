"""The fast engine's profile tables: interpolation, the radial correction's arithmetic, and their
effect on the simulator (known answers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from calosurrogate.simulate import ShowerSimulator, get_detector
from calosurrogate.simulate.detectors import uncalibrated
from calosurrogate.simulate.profile_tables import ProfileTables

DS2 = get_detector("ds2")


def _tables(layer_offsets, radial_factors, energies=(1e3, 1e5), edges=(0.0, 5.0, 20.0)) -> ProfileTables:
    return ProfileTables.from_arrays(energies, layer_offsets, edges, radial_factors)


def test_values_are_interpolated_in_ln_energy_and_held_beyond_the_table() -> None:
    tables = _tables([[0.0, -0.01], [0.02, 0.01]], [[1.0, 2.0], [4.0, 0.5]])
    at = np.array([500.0, 1e3, 1e4, 1e5, 1e6])
    np.testing.assert_allclose(
        tables.layer_offsets_at(at), [[0, -0.01], [0, -0.01], [0.01, 0], [0.02, 0.01], [0.02, 0.01]], atol=1e-12
    )
    # the factors' logarithms are interpolated: the geometric mean half-way in ln E
    np.testing.assert_allclose(tables.radial_factors_at(at)[:, 0], [1, 1, 2, 4, 4])
    np.testing.assert_allclose(tables.radial_factors_at(at)[2, 1], 1.0)


def test_radial_factors_reweight_the_density_and_keep_the_profile_normalised() -> None:
    # cdf(r) = r^2 / (r^2 + a^2): a known profile; a factor of 2 on [0, 5] mm, 1 on [5, 20] mm
    a = 4.0

    def cdf(r):
        return np.broadcast_to(r**2 / (r**2 + a**2), (1, np.shape(r)[-1]))

    tables = _tables([[0.0]], [[2.0, 1.0]], energies=(1e3,))
    factors = tables.radial_factors_at(np.array([1e3]))
    edges = np.array([0.0, 2.5, 5.0, 10.0, 40.0])  # rings that split, match and outreach the intervals
    rings = tables.corrected_rings(cdf, edges, factors)[0]
    F = cdf(edges[None])[0]
    total = 2 * F[2] + (1 - F[2])
    expected = np.array([2 * F[1], 2 * (F[2] - F[1]), F[3] - F[2], F[4] - F[3]]) / total
    np.testing.assert_allclose(rings, expected, rtol=1e-12)
    ones = _tables([[0.0]], [[1.0, 1.0]], energies=(1e3,))
    np.testing.assert_allclose(ones.corrected_rings(cdf, edges, np.ones((1, 2)))[0], np.diff(F), rtol=1e-12)


def test_tables_that_change_nothing_leave_the_showers_unchanged() -> None:
    geometry = DS2.geometry
    neutral = _tables(np.zeros((2, geometry.n_layers)), np.ones((2, 2)), edges=(0.0, 10.0, 41.85))
    energies = np.geomspace(1e3, 1e5, 64)
    plain = ShowerSimulator(dataclasses.replace(DS2, profile_tables=None)).simulate(energies, np.random.default_rng(4))
    same = ShowerSimulator(dataclasses.replace(DS2, profile_tables=neutral)).simulate(
        energies, np.random.default_rng(4)
    )
    np.testing.assert_allclose(same, plain, rtol=1e-9, atol=1e-9)


def test_layer_offsets_add_their_share_of_the_incident_energy_to_each_layer() -> None:
    geometry = DS2.geometry
    offsets = np.zeros((1, geometry.n_layers))
    offsets[0, 10] = 0.02  # 2% of the incident energy more in layer 10
    tables = _tables(offsets, np.ones((1, 2)), energies=(1e4,), edges=(0.0, 10.0, 41.85))
    energies = np.full(200, 1e4)
    rng = np.random.default_rng(2)
    # one set of profile parameters for both (mean_showers then also sets each shower's contained share)
    profile = (energies, rng.uniform(4, 6, 200), rng.uniform(3, 4, 200), np.zeros(200), rng.uniform(0.9, 1.1, 200))
    _, before = ShowerSimulator(dataclasses.replace(DS2, profile_tables=None))._profile(*profile)
    voxels, after = ShowerSimulator(dataclasses.replace(DS2, profile_tables=tables))._profile(*profile)
    np.testing.assert_allclose(
        after - before,
        np.broadcast_to(np.where(np.arange(geometry.n_layers) == 10, 200.0, 0.0), after.shape),
        atol=1e-6,
    )
    # the voxels carry the layer energy that lies inside the read-out
    inside = voxels[:, geometry.layer_slice(10)].sum(1)
    assert np.all(inside <= after[:, 10]) and np.all(inside > 0.9 * after[:, 10])


def test_the_shipped_tables_were_fitted_to_geant4_work_on_ds3_and_uncalibrated_drops_them() -> None:
    assert "Geant4" in DS2.profile_tables.source and len(DS2.profile_tables.energies_mev) >= 3
    assert uncalibrated(DS2).profile_tables is None
    ds3 = get_detector("ds3")
    voxels, layers = ShowerSimulator(ds3).mean_showers(np.array([2e4, 2e5]), np.random.default_rng(0))
    inside = voxels.reshape(2, *ds3.geometry.shape).sum(axis=(2, 3))
    assert np.all(inside <= layers + 1e-9) and np.all(inside.sum(1) > 0.85 * layers.sum(1))


def test_a_bad_tables_file_is_named(tmp_path) -> None:
    path = tmp_path / "tables.json"
    path.write_text(
        '{"energies_mev": [2000, 1000], "layer_offsets": [[0], [0]], "radial_edges_mm": [0, 1], "radial_factors": [[1], [1]]}'
    )
    with pytest.raises(ValueError, match=r"tables\.json.*increasing"):
        ProfileTables.load(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"tables\.json: not a profile-tables file"):
        ProfileTables.load(path)
