"""Weighted metrics against known answers: integer weights are repeated showers, zero weights
are absent ones, uniform weights change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.metrics import ClassifierSettings, classifier_test, fpd, kpd
from calosurrogate.metrics.prdc import precision_recall_density_coverage
from calosurrogate.metrics.response import response_resolution
from calosurrogate.metrics.separation import (
    histogram_counts,
    separation_power_from_counts,
    weighted_counts,
)
from calosurrogate.metrics.weights import check_weights, effective_sample_size


def test_effective_sample_size_known_cases() -> None:
    assert effective_sample_size(np.ones(1234)) == pytest.approx(1234)
    assert effective_sample_size(np.r_[1.0, np.zeros(99)]) == pytest.approx(1.0)
    # half the showers at weight 3, half at 1: (2n)^2 / (5n) with n per half
    assert effective_sample_size(np.r_[np.full(50, 3.0), np.ones(50)]) == pytest.approx(200**2 / 500)


def test_check_weights_names_the_problem() -> None:
    with pytest.raises(ValueError, match="3 weights for 4 showers"):
        check_weights(np.ones(3), 4)
    with pytest.raises(ValueError, match="negative"):
        check_weights(np.array([1.0, -1.0]), 2)
    with pytest.raises(ValueError, match="not finite"):
        check_weights(np.array([1.0, np.nan]), 2)


def test_integer_weights_equal_repeated_showers(rng) -> None:
    values = rng.normal(size=500)
    repeats = rng.integers(0, 4, size=500)
    bins = np.linspace(-3, 3, 31)
    sums, squares, outside = weighted_counts(values, bins, repeats.astype(float))
    counts, outside_repeated = histogram_counts(np.repeat(values, repeats), bins)
    np.testing.assert_allclose(sums, counts)
    assert outside == pytest.approx(outside_repeated)
    reference, _ = histogram_counts(rng.normal(0.3, 1.0, 2000), bins)
    weighted = separation_power_from_counts(reference, sums, generated_sumw2=squares)
    repeated = separation_power_from_counts(reference, counts)
    assert weighted.value == pytest.approx(repeated.value, rel=1e-12)
    # unit weights: the bootstrap is the plain Poisson one, to the draw
    ones_sums, ones_squares, _ = weighted_counts(values, bins, np.ones(500))
    plain, _ = histogram_counts(values, bins)
    a = separation_power_from_counts(reference, ones_sums, generated_sumw2=ones_squares, seed=3)
    b = separation_power_from_counts(reference, plain, seed=3)
    assert a.value == pytest.approx(b.value) and a.error == pytest.approx(b.error)


def test_weighted_response_equals_repeated_sample(rng) -> None:
    e_inc = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 400))
    e_tot = e_inc * rng.normal(0.9, 0.05, 400)
    repeats = rng.integers(1, 4, size=400)
    edges = np.logspace(3, 6, 4)
    weighted = response_resolution(e_inc, e_tot, edges, repeats.astype(float))
    repeated = response_resolution(np.repeat(e_inc, repeats), np.repeat(e_tot, repeats), edges)
    np.testing.assert_allclose(weighted["response"], repeated["response"], rtol=1e-12)
    # the spread is the weighted one; only the n - 1 correction differs (effective count vs repeated count)
    np.testing.assert_allclose(weighted["resolution"], repeated["resolution"], rtol=0.02)
    plain = response_resolution(e_inc, e_tot, edges)
    unit = response_resolution(e_inc, e_tot, edges, np.ones(400))
    for key in ("response", "response_error", "resolution", "resolution_error"):
        np.testing.assert_allclose(unit[key], plain[key], rtol=1e-12)


def test_zero_weights_remove_the_junk_from_fpd_kpd_prdc(rng) -> None:
    reference = rng.normal(size=(6000, 4))
    good = rng.normal(size=(3000, 4))
    junk = rng.normal(3.0, 1.0, size=(3000, 4))
    generated = np.concatenate([good, junk])
    weights = np.r_[np.ones(3000), np.zeros(3000)]
    kw = {"min_samples": 1000, "max_samples": 3000, "num_batches": 4}
    assert fpd(reference, generated, **kw).value > 10 * fpd(reference, generated, generated_weights=weights, **kw).value
    assert fpd(reference, generated, generated_weights=weights, **kw).value < 0.05
    k_kw = {"batch_size": 1000, "num_batches": 4}
    assert (
        abs(kpd(reference, generated, generated_weights=weights, **k_kw).value)
        < 0.1 * kpd(reference, generated, **k_kw).value
    )
    unweighted = precision_recall_density_coverage(reference[:3000], generated)
    weighted = precision_recall_density_coverage(reference[:3000], generated, generated_weights=weights)
    alone = precision_recall_density_coverage(reference[:3000], generated)  # same sets: recall, coverage agree
    assert weighted["precision"] > unweighted["precision"] + 0.2
    assert weighted["recall"] == alone["recall"] and weighted["coverage"] == alone["coverage"]


def test_weighted_classifier_judges_the_weighted_sample(rng) -> None:
    reference = rng.normal(size=(3000, 3))
    generated = np.concatenate([rng.normal(size=(1500, 3)), rng.normal(4.0, 1.0, size=(1500, 3))])
    order = rng.permutation(3000)
    generated = generated[order]
    weights = np.r_[np.ones(1500), np.full(1500, 1e-6)][order]
    settings = ClassifierSettings.cpu(hidden=32, epochs=8, batch_size=256)
    plain = classifier_test(generated, reference, settings)
    weighted = classifier_test(generated, reference, settings, generated_weights=weights)
    assert plain.auc > 0.7
    assert weighted.auc < 0.6
