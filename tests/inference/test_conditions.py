"""Conditions inferred through a likelihood: known answers on toy densities whose maximum and
Laplace covariance are analytic, and the calibration of the quoted intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from calosurrogate.inference import fit_conditions, pseudo_experiments
from calosurrogate.inference.conditions import calibration


class GaussianToy(nn.Module):
    """Showers of three 'voxels': x0 ~ N(a, 1), x1 ~ N(a + b, 1), x2 ~ N(E / 1000, 1); conditions
    (E, a, b). The maximum-likelihood (a, b) is (mean x0, mean x1 - mean x0) and the Fisher
    information per shower [[2, 1], [1, 1]]."""

    condition_names = ("incident_energies", "a", "b")

    def log_likelihood(self, showers: Tensor, conditions: Tensor) -> Tensor:
        energy, a, b = conditions.unbind(1)
        means = torch.stack([a, a + b, energy / 1000], 1)
        return torch.distributions.Normal(means, 1.0).log_prob(showers).sum(1)


def _toy_sample(
    n: int, a: float, b: float, rng: np.random.Generator, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``spread`` != 1 makes the toy's unit widths wrong: a misspecified model of the sample."""
    energy = rng.uniform(1e3, 1e4, n)
    showers = rng.normal(np.stack([np.full(n, a), np.full(n, a + b), energy / 1000], 1), spread)
    conditions = np.stack([energy, np.full(n, a), np.full(n, b)], 1)
    return showers, conditions


def test_the_fit_finds_the_analytic_maximum_and_laplace_covariance() -> None:
    rng = np.random.default_rng(0)
    showers, conditions = _toy_sample(400, 0.3, -1.2, rng)
    conditions[:, 1:] = 99.0  # the free columns' values are not used
    fit = fit_conditions(GaussianToy(), showers, conditions, ("a", "b"), {"a": (-2, 2), "b": (-2, 2)})
    expected = [showers[:, 0].mean(), showers[:, 1].mean() - showers[:, 0].mean()]
    np.testing.assert_allclose(fit.values, expected, atol=1e-4)
    np.testing.assert_allclose(fit.covariance, np.linalg.inv(400 * np.array([[2.0, 1.0], [1.0, 1.0]])), rtol=1e-4)
    assert fit.converged and fit.n_showers == 400


def test_one_free_condition_and_a_start_far_from_the_truth() -> None:
    rng = np.random.default_rng(1)
    showers, conditions = _toy_sample(200, 3.7, 0.5, rng)
    fit = fit_conditions(GaussianToy(), showers, conditions, ("a",), {"a": (-5, 5)}, grid=2)
    # b is known (0.5): a's estimate pools both voxels, (mean x0 + mean x1 - b) / 2, error 1 / sqrt(2 n)
    np.testing.assert_allclose(fit.values[0], (showers[:, 0].mean() + showers[:, 1].mean() - 0.5) / 2, atol=1e-4)
    np.testing.assert_allclose(fit.errors[0], 1 / np.sqrt(400), rtol=1e-4)


def test_an_estimate_outside_the_bounds_is_not_called_converged() -> None:
    showers, conditions = _toy_sample(200, 3.0, 0.0, np.random.default_rng(2))
    fit = fit_conditions(GaussianToy(), showers, conditions, ("a",), {"a": (-1, 1)})
    assert fit.values[0] > 2 and not fit.converged


def test_intervals_cover_the_truth_68_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    truths = [(0.5, 0.5), (-1.0, 1.0), (1.5, -0.5)]
    parts = [_toy_sample(50, a, b, rng) for a, b in truths for _ in range(100)]
    showers = np.concatenate([p[0] for p in parts])
    conditions = np.concatenate([p[1] for p in parts])
    result = pseudo_experiments(
        GaussianToy(), showers, conditions, ("a", "b"), {"a": (-2, 2), "b": (-2, 2)}, 50, grid=3
    )
    assert result.converged.all() and len(result.truth) == 300
    for name in ("a", "b"):
        s = result.summary[name]
        assert 0.60 <= s["coverage"] <= 0.76, s  # 0.683 +- 0.027 for 300 samples
        assert abs(s["bias"]) < 4 * s["bias_error"] and 0.85 < s["pull_std"] < 1.15, s


def test_the_sandwich_is_built_from_the_showers_scores() -> None:
    rng = np.random.default_rng(5)
    showers, conditions = _toy_sample(500, 0.3, -1.2, rng, spread=1.7)
    fit = fit_conditions(GaussianToy(), showers, conditions, ("a", "b"), {"a": (-2, 2), "b": (-2, 2)})
    a, b = fit.values
    # the toy's log-likelihood is quadratic: its scores are exact and linear in the residuals
    r0, r1 = showers[:, 0] - a, showers[:, 1] - a - b
    scores = np.stack([r0 + r1, r1], 1)
    laplace = np.linalg.inv(500 * np.array([[2.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(fit.sandwich, laplace @ scores.T @ scores @ laplace, rtol=1e-3)
    # residuals 1.7 times wider than the model says: the sandwich errors are 1.7 times Laplace's
    np.testing.assert_allclose(fit.sandwich_errors / fit.errors, 1.7, rtol=0.1)


def test_the_sandwich_covers_where_the_model_is_too_narrow() -> None:
    rng = np.random.default_rng(6)
    parts = [_toy_sample(50, 0.5, 0.5, rng, spread=2.0) for _ in range(300)]
    showers, conditions = (np.concatenate([p[i] for p in parts]) for i in (0, 1))
    result = pseudo_experiments(GaussianToy(), showers, conditions, ("a", "b"), {"a": (-3, 3), "b": (-3, 3)}, 50,
                                grid=3)  # fmt: skip
    for name in ("a", "b"):
        laplace, sandwich = result.summary[name], result.summary[name]["sandwich"]
        # intervals half as wide as the spread hold the truth P(|z| < 0.5) = 38% of the time
        assert 0.30 <= laplace["coverage"] <= 0.46, laplace
        assert 0.60 <= sandwich["coverage"] <= 0.76, sandwich
        assert 0.85 < sandwich["pull_std"] < 1.2, sandwich


class DequantisedToy(nn.Module):
    """Trained on energies plus U(0, 1) MeV noise: it models x ~ N(a + 1/2, 0.3) given a."""

    condition_names = ("incident_energies", "a")

    def training_noise_mev(self) -> float:
        return 1.0

    def log_likelihood(self, showers: Tensor, conditions: Tensor) -> Tensor:
        return torch.distributions.Normal(conditions[:, 1:2] + 0.5, 0.3).log_prob(showers).sum(1)


def test_showers_are_dequantised_as_the_model_was_trained() -> None:
    # quantised showers, all at exactly 2 MeV: read as they are, the fit would say a = 1.5
    showers = np.full((4000, 1), 2.0)
    conditions = np.stack([np.full(4000, 1e3), np.zeros(4000)], 1)
    fit = fit_conditions(DequantisedToy(), showers, conditions, ("a",), {"a": (0, 4)})
    # with the noise: the estimate is 2 + mean(u) - 1/2, and mean(u) of 4,000 draws is 1/2 +- 0.005
    assert fit.values[0] == pytest.approx(2.0, abs=0.02)
    again = fit_conditions(DequantisedToy(), showers, conditions, ("a",), {"a": (0, 4)})
    other = fit_conditions(DequantisedToy(), showers, conditions, ("a",), {"a": (0, 4)}, seed=1)
    assert again.values[0] == fit.values[0] and other.values[0] != fit.values[0]


def test_a_sample_that_mixes_configurations_is_refused() -> None:
    rng = np.random.default_rng(4)
    parts = [_toy_sample(20, a, 0.0, rng) for a in (0.0, 1.0)]
    showers, conditions = (np.concatenate([p[i] for p in parts]) for i in (0, 1))
    with pytest.raises(ValueError, match="mixes values"):
        pseudo_experiments(GaussianToy(), showers, conditions, ("a",), {"a": (-2, 2)}, 40)
    with pytest.raises(ValueError, match="no \\['c'\\]"):
        fit_conditions(GaussianToy(), showers, conditions, ("c",), {"c": (0, 1)})


def test_calibration_of_known_residuals() -> None:
    truth = np.zeros(4)
    summary = calibration(truth, np.array([0.5, -0.5, 2.0, 0.0]), np.ones(4))
    assert summary["coverage"] == 0.75 and summary["bias"] == 0.5 and summary["mean_error"] == 1.0
