"""ParaFlow's set-up in the fast engine: conversion, energy sharing, bending, files (known answers)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from scipy import stats

from calosurrogate.metrics.crystal_shapes import crystal_shower_shapes
from calosurrogate.simulate.paraflow import (
    ParaFlowSetup,
    ParaFlowSimulator,
    bending,
    bremsstrahlung_retained,
    conversion_probability,
    pair_energy_fraction,
    simulate_paraflow_to_file,
)


def _events(n: int, thickness: float, distance: float = 70.0, energy: float = 50e3) -> dict[str, np.ndarray]:
    return {"incident_energies": np.full(n, energy), "plate_thickness": np.full(n, thickness),
            "plate_distance": np.full(n, distance)}  # fmt: skip


@pytest.mark.parametrize("thickness", [0.5, 1.0, 1.5])
def test_photons_convert_in_the_plate_as_often_as_1_minus_exp_of_minus_7d_over_9(thickness: float) -> None:
    n = 20_000
    sim = ParaFlowSimulator()
    c = _events(n, thickness)
    p = sim.particles(c["incident_energies"], c["plate_thickness"], c["plate_distance"], np.random.default_rng(1))
    # an unconverted photon arrives alone with all the energy
    alone = np.bincount(p.event, minlength=n) == 1
    whole = np.zeros(n, bool)
    whole[p.event[p.is_photon & (p.energy == 50e3)]] = True
    converted = 1 - (alone & whole).mean()
    expected = 1 - np.exp(-7 * thickness / 9)
    assert conversion_probability(thickness) == pytest.approx(expected)
    assert abs(converted - expected) < 4 * np.sqrt(expected * (1 - expected) / n)


def test_the_pair_shares_the_energy_with_the_bethe_heitler_density() -> None:
    x = pair_energy_fraction(50_000, np.random.default_rng(2))
    # density 1 - 4/3 x (1 - x), normalised by its integral 7/9
    cdf = lambda t: (t - 2 / 3 * t**2 + 4 / 9 * t**3) / (7 / 9)  # noqa: E731
    assert stats.kstest(x, cdf).pvalue > 1e-3
    assert stats.kstest(x, "uniform").pvalue < 1e-6  # the test can tell it from a flat sharing


def test_bremsstrahlung_follows_bethe_heitler_mean_energy_loss() -> None:
    # E[y] = E[exp(-G)] with G ~ Gamma(t / ln 2) is (1/2) ** (t / ln 2) = exp(-t): the mean energy
    # falls by e over one radiation length, the definition of X0
    for t in (0.3, 1.0):
        y = bremsstrahlung_retained(np.full(100_000, t), np.random.default_rng(3))
        assert y.mean() == pytest.approx(np.exp(-t), rel=0.01)
    assert np.all(bremsstrahlung_retained(np.zeros(5), np.random.default_rng(3)) == 1.0)


def test_bending_on_the_circle_of_radius_p_over_0_3_b() -> None:
    # 1 GeV in 4 T: R = 1 / 1.2 m = 833.3 mm; after 500 mm the circle has moved R - sqrt(R^2 - 500^2)
    shift, angle = bending(np.array([1.0, 0.1]), 4.0, np.array([500.0, 500.0]))
    radius = 1000.0 / 1.2
    assert shift[0] == pytest.approx(radius - np.sqrt(radius**2 - 500.0**2))
    assert angle[0] == pytest.approx(np.arcsin(500.0 / radius))
    assert np.isnan(shift[1])  # 100 MeV curls up on a 83 mm circle


def test_charged_particles_arrive_where_their_circle_takes_them() -> None:
    sim = ParaFlowSimulator(dataclasses.replace(ParaFlowSetup(), source_smear_mm=0.0))
    c = _events(4000, 1.5, distance=90.0, energy=30e3)
    p = sim.particles(c["incident_energies"], c["plate_thickness"], c["plate_distance"], np.random.default_rng(4))
    charged = ~p.is_photon
    assert charged.sum() > 1000
    # from the entry slope, the flight on the circle; from it, the displacement: exactly where it landed
    radius = 1e3 * (p.energy[charged] / 1e3) / (0.3 * 4.0)
    sine = np.sin(np.arctan(np.abs(p.slope_y[charged])))
    np.testing.assert_allclose(np.abs(p.y[charged]), radius * (1 - np.sqrt(1 - sine**2)), rtol=1e-9)
    flight = radius * sine
    plate_mm = 1.5 * 17.57
    assert np.all(flight > 900 - plate_mm / 2 - 1e-6) and np.all(flight < 900 + plate_mm / 2 + 1e-6)
    # electrons and positrons bend to opposite sides, and nothing is created or lost with everything arriving
    assert np.all(np.sign(p.y[charged]) == np.sign(p.slope_y[charged]))
    per_event = np.bincount(p.event, weights=p.energy, minlength=4000)
    counts = np.bincount(p.event[charged], minlength=4000)
    np.testing.assert_allclose(per_event[counts == 2], 30e3, rtol=1e-9)
    assert set(np.unique(np.sign(p.y[charged]))) == {-1.0, 1.0}


def test_showers_widen_with_the_plate_thickness_and_distance() -> None:
    sim = ParaFlowSimulator()
    width = {}
    for thickness, distance in ((0.5, 50.0), (1.5, 50.0), (0.5, 90.0)):
        showers = sim.simulate(_events(1500, thickness, distance), np.random.default_rng(5))
        width[thickness, distance] = crystal_shower_shapes(showers.reshape(-1, 8, 16))["width"].mean()
    assert width[1.5, 50.0] > width[0.5, 50.0] + 0.03
    assert width[0.5, 90.0] > width[0.5, 50.0] + 0.03


def test_the_window_holds_the_largest_energy_sum() -> None:
    sim = ParaFlowSimulator()
    images = np.zeros((2, 24, 24))
    images[0, 3, 20] = 5.0
    images[1, 10:14, 0:3] = 1.0
    cropped = sim.crop(images)
    assert cropped.shape == (2, 8, 16)
    assert cropped[0].sum() == 5.0 and cropped[1].sum() == 12.0


def test_a_file_with_its_conditions_reproducible_and_never_overwritten(tmp_path) -> None:
    path = simulate_paraflow_to_file(300, tmp_path / "a.h5", seed=3, fixed={"plate_distance": 60.0}, progress=False)
    again = simulate_paraflow_to_file(300, tmp_path / "b.h5", seed=3, fixed={"plate_distance": 60.0}, progress=False)
    with h5py.File(path) as f, h5py.File(again) as g:
        assert f["showers"].shape == (300, 128)
        np.testing.assert_array_equal(f["showers"][:], g["showers"][:])
        assert np.all(f["plate_distance"][:] == 60.0)
        thickness = f["plate_thickness"][:]
        assert 0.5 <= thickness.min() and thickness.max() <= 1.5 and np.ptp(thickness) > 0.5
        energies = f["incident_energies"][:]
        assert 20e3 <= energies.min() and energies.max() <= 100e3
        assert "not Geant4" in f.attrs["generator"]
    with pytest.raises(FileExistsError):
        simulate_paraflow_to_file(10, path, progress=False)
    with pytest.raises(ValueError, match="no condition"):
        simulate_paraflow_to_file(10, tmp_path / "c.h5", fixed={"thickness": 1.0}, progress=False)


def test_held_out_regions_and_other_ranges_are_respected() -> None:
    region = (("plate_thickness", 0.9, 1.1), ("plate_distance", 65.0, 75.0))
    setup = dataclasses.replace(ParaFlowSetup(), held_out=(region,))
    drawn = ParaFlowSimulator(setup).draw_conditions(20_000, np.random.default_rng(0))
    d, b = drawn["plate_thickness"], drawn["plate_distance"]
    inside = (d >= 0.9) & (d <= 1.1) & (b >= 65) & (b <= 75)
    assert not inside.any()
    # uniform over what is left: the band d in [0.9, 1.1] keeps its share outside b in [65, 75]
    band = (d >= 0.9) & (d <= 1.1)
    assert abs(band.mean() - 0.2 * 0.75 / 0.95) < 0.01
    narrow = ParaFlowSetup().with_ranges({"plate_thickness": (0.9, 1.1)})
    drawn = ParaFlowSimulator(narrow).draw_conditions(1000, np.random.default_rng(1))
    assert drawn["plate_thickness"].min() >= 0.9 and drawn["plate_thickness"].max() <= 1.1
    assert drawn["plate_distance"].max() - drawn["plate_distance"].min() > 35
    with pytest.raises(ValueError, match="covers the whole range"):
        ParaFlowSetup(held_out=((("plate_thickness", 0.0, 2.0),),))
    with pytest.raises(ValueError, match="no condition"):
        ParaFlowSetup().with_ranges({"field": (1, 2)})
