"""Point-cloud observables and the Jensen-Shannon distance: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.data.points import CellHits
from calosurrogate.geometry import ild_ecal
from calosurrogate.metrics.point_clouds import (
    Observable,
    jensen_shannon,
    jensen_shannon_from_counts,
    observables,
)


def test_jensen_shannon_known_answers() -> None:
    same = jensen_shannon_from_counts(np.array([5.0, 3, 2]), np.array([10.0, 6, 4]))
    assert same.value == pytest.approx(0.0, abs=1e-12)
    disjoint = jensen_shannon_from_counts(np.array([5.0, 0, 0]), np.array([0.0, 0, 7]))
    assert disjoint.value == pytest.approx(1.0)
    # half the mass shared: JS divergence 0.5 bit (the shared half contributes nothing)
    half = jensen_shannon_from_counts(np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]))
    assert half.value == pytest.approx(np.sqrt(0.5))
    assert jensen_shannon_from_counts(np.zeros(3), np.ones(3)).value == 1.0


def test_jensen_shannon_of_samples_and_its_error() -> None:
    rng = np.random.default_rng(0)
    bins = np.linspace(-4, 4, 31)
    a, b = Observable(rng.normal(size=200_000)), Observable(rng.normal(size=200_000))
    shifted = Observable(rng.normal(1.0, 1.0, size=200_000))
    alike, apart = jensen_shannon("x", a, b, bins), jensen_shannon("x", a, shifted, bins)
    assert alike.value < 0.01 < 0.2 < apart.value
    assert 0 < alike.error < 0.01
    # weights count as entries: a sample weighted 2 equals the sample written twice
    weighted = jensen_shannon("x", Observable(np.array([0.1, 1.1]), np.array([2.0, 1.0])),
                              Observable(np.array([0.1, 0.1, 1.1])), np.array([0.0, 1.0, 2.0]))  # fmt: skip
    assert weighted.value == pytest.approx(0.0, abs=1e-12)


def test_observables_of_two_showers() -> None:
    g = ild_ecal()
    # shower 0: two hits in layer 3 at x = +-5 mm (1 and 3 MeV); shower 1: one hit in layer 10
    hits = CellHits(np.array([0, 2, 3]), np.array([3, 3, 10]), np.zeros(3, int), np.zeros(3, int),
                    np.array([1.0, 3.0, 2.0]), np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 3.0]]), g.cell_mm)  # fmt: skip
    obs = observables(hits)
    np.testing.assert_allclose(obs["occupancy"].values, [2, 1])
    np.testing.assert_allclose(obs["energy_sum"].values, [4, 2])
    np.testing.assert_allclose(obs["cog_x"].values, [2.5, 0.0])
    np.testing.assert_allclose(obs["cog_y"].values, [0.0, 3.0])
    np.testing.assert_allclose(obs["cog_z"].values, [3.0, 10.0])
    np.testing.assert_allclose(obs["radial_energy"].values, [5, 5, 3])
    np.testing.assert_allclose(obs["layer_energy"].weights, [1, 3, 2])
