"""Response and resolution against the incident energy on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.metrics.response import incident_energy_bins, response_resolution


def test_discrete_energies_get_a_bin_each() -> None:
    energies = np.repeat(2.0 ** np.arange(8, 12), 5)
    edges = incident_energy_bins(energies)
    assert len(edges) == 5
    assert np.array_equal(np.digitize(2.0 ** np.arange(8, 12), edges) - 1, np.arange(4))


def test_continuous_energies_get_log_bins_over_whole_decades(rng) -> None:
    energies = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 5000))
    edges = incident_energy_bins(energies, n_bins=6)
    assert np.allclose(edges, np.logspace(3, 6, 7))  # 1 GeV - 1 TeV, two bins a decade
    assert np.histogram(energies, edges)[0].sum() == 5000
    # the two halves of the sample get the same bins, whatever their extremes
    assert np.array_equal(incident_energy_bins(energies[:2500], 6), incident_energy_bins(energies[2500:], 6))
    # an energy on a decade lies inside the last bin
    on_decade = incident_energy_bins(np.concatenate([energies, [1e6]]), 6)
    assert np.digitize([1e6], on_decade)[0] - 1 == 5  # right-open bins, as the histograms and response use


def test_gaussian_response_and_resolution(rng) -> None:
    # E_tot / E_inc ~ N(0.9, (0.9 * 0.1)^2) at low energy and N(0.95, (0.95 * 0.02)^2) at high energy
    n = 40_000
    e_inc = np.concatenate([np.full(n, 1e3), np.full(n, 1e5)])
    mean = np.where(e_inc < 1e4, 0.9, 0.95)
    e_tot = e_inc * rng.normal(mean, mean * np.where(e_inc < 1e4, 0.1, 0.02))
    out = response_resolution(e_inc, e_tot, incident_energy_bins(e_inc))
    assert out["count"].tolist() == [n, n]
    assert out["response"] == pytest.approx([0.9, 0.95], abs=4 * out["response_error"].max())
    assert out["resolution"] == pytest.approx([0.1, 0.02], rel=0.02)
    assert out["resolution_error"] == pytest.approx(out["resolution"] / np.sqrt(2 * (n - 1)))
    assert out["response_error"][0] == pytest.approx(0.09 / np.sqrt(n), rel=0.02)


def test_an_empty_bin_is_nan_not_an_error() -> None:
    out = response_resolution(np.array([1e3, 1e3, 1e3]), np.array([900.0, 950.0, 920.0]), np.array([1e2, 5e2, 5e3]))
    assert out["count"].tolist() == [0, 3] and np.isnan(out["response"][0])
    assert out["response"][1] == pytest.approx((0.9 + 0.95 + 0.92) / 3)
