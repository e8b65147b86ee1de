"""The fast engine's angled photon showers as point clouds."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from calosurrogate.data.points import ENERGY, LAYER, project, read_point_clouds
from calosurrogate.geometry import ild_ecal
from calosurrogate.geometry.planar import direction_from_angles
from calosurrogate.metrics.point_clouds import angular_errors, principal_axes
from calosurrogate.simulate.points import PointShowerSimulator


def _showers(theta_x: float, theta_y: float, n: int = 40, energy_gev: float = 80.0, seed: int = 0):
    g = ild_ecal()
    sim = PointShowerSimulator(g)
    directions = np.repeat(direction_from_angles(np.array([theta_x]), np.array([theta_y])), n, axis=0)
    entry = np.random.default_rng(seed).uniform(-2.5, 2.5, (n, 2))
    return g, sim.simulate(np.full(n, energy_gev * 1e3), directions, entry, np.random.default_rng(seed))


@pytest.mark.parametrize("angles", [(0.0, 0.0), (0.45, 0.0), (-0.3, 0.4)])
def test_angled_showers_point_along_their_direction(angles) -> None:
    g, clouds = _showers(*angles)
    hits = project(clouds, g).above(g.mip_mev / 2)
    axes = principal_axes(hits, g, clouds.directions, clouds.entry_points, top_fraction=0.05)
    errors = np.degrees(angular_errors(axes, clouds.directions))
    assert np.median(errors) < 1.5 and np.percentile(errors, 90) < 4.0
    # a wrong direction is far off: the check can fail
    wrong = direction_from_angles(np.array([angles[0] + 0.2]), np.array([angles[1]]))
    assert np.median(np.degrees(angular_errors(axes, wrong))) > 8


def test_points_are_local_and_the_shower_longer_when_tilted() -> None:
    _, straight = _showers(0.0, 0.0, energy_gev=50)
    _, tilted = _showers(0.5, 0.0, energy_gev=50)
    for clouds in (straight, tilted):
        # the local frame centres every layer on the photon's line
        weights = clouds.points[:, ENERGY]
        assert abs(np.average(clouds.points[:, 0], weights=weights)) < 1.0
        assert abs(np.average(clouds.points[:, 1], weights=weights)) < 1.0
    # a tilted photon crosses more X0 per layer: its energy peaks in an earlier layer, and its
    # spot ellipses stretch along x
    mean_layer = [np.average(c.points[:, LAYER], weights=c.points[:, ENERGY]) for c in (straight, tilted)]
    assert mean_layer[1] < mean_layer[0] - 0.5
    spread = np.sqrt(np.average(tilted.points[:, 0] ** 2, weights=tilted.points[:, ENERGY]))
    across = np.sqrt(np.average(tilted.points[:, 1] ** 2, weights=tilted.points[:, ENERGY]))
    assert spread > 1.05 * across


def test_calibrated_energy_is_linear_and_its_resolution_improves_with_energy_and_blocks_are_reproducible() -> None:
    g = ild_ecal()
    sim = PointShowerSimulator(g)
    reco = []
    for energy_gev in (10, 90):
        n = 150
        c = sim.simulate(np.full(n, energy_gev * 1e3), np.tile([0.0, 0.0, 1.0], (n, 1)), np.zeros((n, 2)),
                         np.random.default_rng(energy_gev))  # fmt: skip
        layer = c.points[:, LAYER].astype(int)
        reco.append(np.bincount(c.shower_index, weights=c.points[:, ENERGY] / g.sampling_fractions[layer]) / energy_gev)
    assert np.mean(reco[1]) == pytest.approx(np.mean(reco[0]), rel=0.03)  # linear
    assert np.std(reco[1]) / np.mean(reco[1]) < 0.7 * np.std(reco[0]) / np.mean(reco[0])
    low = sim.sample(60, "fixed:10GeV", seed=1)
    again = sim.sample(60, "fixed:10GeV", seed=1)
    np.testing.assert_array_equal(again.points, low.points)
    # points sit at sub-cell centres in the detector frame
    shifts = g.shifts(low.directions, low.entry_points)
    layer = low.points[:, LAYER].astype(int)
    xy = g.to_global(low.points[:, :2].astype(np.float64), layer, shifts[low.shower_index, layer])
    phase = xy / g.sub_cell_mm - 0.5
    np.testing.assert_allclose(phase, np.round(phase), atol=2e-4)


def test_calo_simulate_and_inspect_ild_ecal(tmp_path) -> None:
    from calosurrogate.cli import main

    out = tmp_path / "ild.h5"
    runner = CliRunner()
    result = runner.invoke(main, ["simulate", "--geometry", "ild-ecal", "--n", "70", "--out", str(out), "--quiet",
                                  "--energy", "uniform:20GeV:40GeV", "--seed", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    clouds = read_point_clouds(out)
    assert len(clouds) == 70 and 20e3 <= clouds.incident_energies.min() and clouds.incident_energies.max() <= 40e3
    np.testing.assert_array_equal(clouds.points, PointShowerSimulator(ild_ecal()).sample(70, "uniform:20GeV:40GeV",
                                                                                          seed=4).points)  # fmt: skip
    shown = runner.invoke(main, ["inspect", str(out)])
    assert shown.exit_code == 0 and "70 point-cloud showers" in shown.output and "angles to the normal" in shown.output
    again = runner.invoke(main, ["simulate", "--geometry", "ild-ecal", "--n", "5", "--out", str(out)])
    assert again.exit_code != 0 and "--force" in again.output
    refused = runner.invoke(main, ["simulate", "--geometry", "ild-ecal", "--n", "5", "--out", str(tmp_path / "g.h5"),
                                   "--workers", "2"])  # fmt: skip
    assert refused.exit_code != 0 and "one process" in refused.output
