"""Metrics against answers known in advance (hand computation, identical and disjoint samples)."""

from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer, default_min_energy, get_geometry
from calosurrogate.metrics import (
    ClassifierSettings,
    apply_threshold,
    cfd,
    classifier_test,
    compute_features,
    fpd,
    kpd,
    low_level_inputs,
    low_level_normed_inputs,
    separation_power,
    separation_power_from_counts,
)
from calosurrogate.metrics.cfd import CorrelationAccumulator, variant_pairs, variant_series
from calosurrogate.metrics.fpd_kpd import mmd_poly_unbiased

TOY = CylindricalGeometry(
    "toy", "electron", (CylindricalLayer(0, (0.0, 2.0, 6.0), 4), CylindricalLayer(1, (0.0, 2.0, 6.0), 4))
)


# ----------------------------------------------------------------------------- features
def test_features_by_hand() -> None:
    # Layer 0: 3 MeV in voxel (alpha bin 2 = +pi/4, r bin 0 -> r 1 mm) and 1 MeV in (alpha 0 = -3pi/4, r bin 1 -> r 4 mm).
    shower = np.zeros((1, TOY.n_voxels))
    shower[0, TOY.voxel_index(0, 2, 0)] = 3.0
    shower[0, TOY.voxel_index(0, 0, 1)] = 1.0
    shower[0, TOY.voxel_index(1, 1, 1)] = 0.5  # below the 0.6 MeV threshold: removed
    f = compute_features(shower, np.array([[10.0]]), TOY, min_energy=0.6)
    eta = np.array([1 * np.cos(np.pi / 4), 4 * np.cos(-3 * np.pi / 4)])
    w = np.array([3.0, 1.0])
    ec_eta = (w * eta).sum() / 4
    assert f.e_tot[0] == pytest.approx(4.0)
    np.testing.assert_allclose(f.e_layer[0], [4.0, 0.0])
    assert f.ec_eta[0, 0] == pytest.approx(ec_eta)
    assert f.width_eta[0, 0] == pytest.approx(np.sqrt((w * eta**2).sum() / 4 - ec_eta**2))
    assert f.ec_r[0, 0] == pytest.approx((3 * 1 + 1 * 4) / 4)
    assert f.width_r[0, 0] == pytest.approx(np.sqrt((3 * 1 + 1 * 16) / 4 - (7 / 4) ** 2))
    np.testing.assert_allclose(f.sparsity[0], [6 / 8, 1.0])
    assert f.ec_eta[0, 1] == 0.0 and f.width_r[0, 1] == 0.0  # empty layer: 1e-16 guard, no NaN


def test_classifier_input_widths() -> None:
    for name, width in (("ds1-photons", 30), ("ds2", 362)):
        g = get_geometry(name)
        showers = np.random.default_rng(0).exponential(5.0, (3, g.n_voxels))
        f = compute_features(showers, np.full((3, 1), 1e4), g, default_min_energy(g))
        assert f.classifier_inputs().shape == (3, width)
        assert low_level_inputs(showers, np.full((3, 1), 1e4)).shape == (3, g.n_voxels + 1)
        assert low_level_normed_inputs(showers, np.full((3, 1), 1e4), g).shape == (3, g.n_voxels + 1 + g.n_layers)


def test_normed_inputs_from_low_level_rows_equal_the_direct_ones() -> None:
    """The evaluation stores one table and derives the normed inputs batch by batch: the same values,
    an empty layer included (log10 of the 1e-8 guard, not of float rounding)."""
    import torch

    from calosurrogate.metrics import NormedFromLowLevel

    g = get_geometry("ds1-photons")
    showers = np.random.default_rng(1).exponential(5.0, (4, g.n_voxels)) * (
        np.random.default_rng(2).random((4, g.n_voxels)) < 0.3
    )
    showers[1, g.layer_slice(2)] = 0.0  # an empty layer
    energies = np.array([[1e3], [1e4], [2e5], [4e6]])
    direct = low_level_normed_inputs(showers, energies, g)
    low = torch.from_numpy(low_level_inputs(showers, energies).astype(np.float32))
    derived = NormedFromLowLevel(g)(low).numpy()
    assert derived.shape == direct.shape
    np.testing.assert_allclose(derived, direct, rtol=2e-6, atol=1e-6)
    assert derived[1, g.n_voxels + 1 + 2] == pytest.approx(-8.0)


def test_thresholds() -> None:
    assert default_min_energy(get_geometry("ds1-photons")) == 1.0
    assert default_min_energy(get_geometry("ds2")) == pytest.approx(0.01515, rel=1e-3)
    np.testing.assert_array_equal(apply_threshold(np.array([[0.5, 1.0, 2.0]]), 1.0), [[0.0, 1.0, 2.0]])


# ----------------------------------------------------------------------- separation power
def test_separation_identical_and_disjoint(rng) -> None:
    a = rng.normal(0, 1, 5000)
    bins = np.linspace(-5, 5, 51)
    assert separation_power(a, a, bins).value == 0.0
    disjoint = separation_power(a[np.abs(a) < 1] - 3, a[np.abs(a) < 1] + 3, bins)
    assert disjoint.value == pytest.approx(1.0)


def test_separation_by_hand_and_outside_counted() -> None:
    # p = (1/2, 1/2, 0), q = (1/4, 1/4, 1/2): S = 1/2 (1/16/(3/4) * 2 + 1/4 / (1/2)) = 1/2 (1/6 + 1/2) = 1/3
    assert separation_power_from_counts(np.array([2, 2, 0]), np.array([1, 1, 2])).value == pytest.approx(1 / 3)
    s = separation_power(np.array([0.5, 1.5, 7.0, np.nan]), np.array([0.5, 1.5]), np.array([0.0, 1.0, 2.0]))
    assert s.value == pytest.approx(0.0)
    assert s.settings["reference_outside"] == 2 and s.settings["generated_outside"] == 0


# ------------------------------------------------------------------------------ FPD / KPD
def test_fpd_kpd_twos_and_zeros() -> None:
    twos, zeros = np.full((2000, 2), 2.0), np.zeros((2000, 2))
    small = {"min_samples": 500, "max_samples": 1000, "num_batches": 2}
    assert fpd(twos, zeros, **small).value == pytest.approx(2.0, abs=1e-3)
    assert fpd(twos, zeros, normalise=False, **small).value == pytest.approx(8.0, abs=4e-3)
    assert kpd(twos, zeros, batch_size=200).value == pytest.approx(15.0)
    assert kpd(twos, zeros, batch_size=200, normalise=False).value == pytest.approx(624.0)


def test_fpd_kpd_same_distribution_near_zero(rng) -> None:
    a, b = rng.normal(size=(20000, 4)), rng.normal(size=(20000, 4))
    shifted = b + 0.5
    small = {"min_samples": 2000, "max_samples": 5000, "num_batches": 5}
    same, diff = fpd(a, b, **small), fpd(a, shifted, **small)
    assert same.value < 0.01 and diff.value > 0.05
    k_same, k_diff = kpd(a, b, batch_size=1000), kpd(a, shifted, batch_size=1000)
    assert abs(k_same.value) < 5 * max(k_same.error, 1e-4) and k_diff.value > 10 * max(k_same.error, 1e-4)


@pytest.mark.parametrize("degree", [3, 4])
def test_chunked_mmd_matches_dense_float64_formula(rng, degree) -> None:
    x, y = rng.random((700, 30)), rng.random((500, 30)) * 1.1
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** degree, (y @ y.T / d + 1) ** degree, (x @ y.T / d + 1) ** degree)
    m, n = len(x), len(y)
    dense = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    chunked = mmd_poly_unbiased(x, y, degree=degree, chunk_rows=128)  # several blocks, one partial
    assert dense > 1e-3
    assert chunked == pytest.approx(dense, rel=1e-5)


# ----------------------------------------------------------------------------------- CFD
def test_cfd_of_sample_with_itself_is_zero_and_constant_voxels_are_zero(rng) -> None:
    g = get_geometry("ds2")
    showers = rng.exponential(1.0, (300, g.n_voxels)) * (rng.random((300, g.n_voxels)) < 0.3)
    showers[:, :100] = 0.0  # always-zero voxels
    for variant in ("voxel", "layer", "group"):
        result = cfd(showers, showers, g, variant)
        assert result.value == 0.0
    acc = CorrelationAccumulator(variant_pairs("voxel", g))
    acc.update(variant_series("voxel", showers, g))
    corr = acc.correlation_map()
    assert np.isfinite(corr).all() and corr.shape == (44, 16, 9)
    assert corr.reshape(-1)[:100].tolist() == [0.0] * 100


def test_correlation_matches_numpy_and_streaming_equals_whole(rng) -> None:
    g = get_geometry("ds2")
    base = rng.normal(size=(400, 1))
    showers = np.abs(base + 0.5 * rng.normal(size=(400, g.n_voxels))) * 10 + 100
    acc = CorrelationAccumulator(variant_pairs("layer", g), n_bootstrap=0)
    for block in np.array_split(showers, 7):
        acc.update(variant_series("layer", block, g))
    layers = variant_series("layer", showers, g)
    np.testing.assert_allclose(acc.correlation_map(), np.corrcoef(layers.T), atol=1e-9)


def test_cfd_detects_changed_correlations(rng) -> None:
    g = get_geometry("ds2")
    common = rng.exponential(1.0, (2000, 1))
    correlated = common * rng.exponential(1.0, (2000, g.n_voxels))
    independent = rng.exponential(1.0, (2000, g.n_voxels))
    same = cfd(correlated[:1000], correlated[1000:], g, "layer")
    changed = cfd(correlated[:1000], independent[:1000], g, "layer")
    assert changed.value > same.value + 10 * changed.error


def test_cfd_works_for_irregular_geometry(rng) -> None:
    g = get_geometry("ds1-photons")
    showers = rng.exponential(1.0, (200, g.n_voxels))
    assert cfd(showers, showers, g, "voxel").value == 0.0
    pairs = variant_pairs("voxel", g)
    # Layer 0 (r 2.5 mm, alpha 0) lies in layer 1's r bin [2, 4) and alpha bin 5 ([0, pi/5)).
    assert g.voxel_index(1, 5, 1) in pairs.b[pairs.a == g.voxel_index(0, 0, 0)]
    assert np.all(g.voxel_layer[pairs.b] == g.voxel_layer[pairs.a] + 1)
    assert variant_pairs("group", g) is None
    with pytest.raises(ValueError, match="does not apply"):
        cfd(showers, showers, g, "group")


# ----------------------------------------------------------------------------- classifier
def test_classifier_identical_vs_disjoint(rng) -> None:
    settings = ClassifierSettings(hidden=32, epochs=8, batch_size=200, runs=2)
    a = rng.normal(size=(3000, 5))
    b = rng.normal(size=(3000, 5))
    same = classifier_test(a, b, settings)
    assert abs(same.auc - 0.5) < 0.05
    assert len(same.runs) == 2 and same.settings["split_sizes"] == [1800, 600, 600]
    far = classifier_test(a, b + 5.0, settings)
    assert far.auc > 0.99 and far.jsd > 0.9


def _image_showers(rng, n: int, shape: tuple[int, int, int], outer: float) -> np.ndarray:
    """Low-level inputs of showers whose energy sits in the innermost radial bin, a fraction
    ``outer`` of it moved to the next bin out."""
    energies = 10 ** rng.uniform(3, 5, (n, 1))
    images = rng.exponential(1.0, (n, *shape)) * np.array([1.0, 0.05, 0.0])[None, None, None, :]
    moved = outer * images[..., 0]
    images[..., 0] -= moved
    images[..., 1] += moved
    fractions = images.reshape(n, -1) / images.reshape(n, -1).sum(1, keepdims=True)
    return np.concatenate([np.log10(energies), fractions], axis=1)


def test_image_classifier_identical_vs_shifted_outwards(rng) -> None:
    shape = (4, 8, 3)
    settings = ClassifierSettings(epochs=6, batch_size=200, cnn_channels=4)
    a, b = _image_showers(rng, 2500, shape, 0.0), _image_showers(rng, 2500, shape, 0.0)
    same = classifier_test(a, b, settings, "cnn", image_shape=shape)
    assert abs(same.auc - 0.5) < 0.06
    assert same.settings["network"] == "cnn"
    shifted = classifier_test(a, _image_showers(rng, 2500, shape, 0.3), settings, "cnn", image_shape=shape)
    assert shifted.auc > 0.95
    with pytest.raises(ValueError, match="1 \\+ 96 inputs"):
        classifier_test(a[:, :50], b[:, :50], settings, "cnn", image_shape=shape)


def test_classifier_refuses_too_few_showers(rng) -> None:
    with pytest.raises(ValueError, match="too few showers"):
        classifier_test(rng.normal(size=(60, 3)), rng.normal(size=(60, 3)), ClassifierSettings(hidden=8, epochs=1))


def test_merged_halves_equal_whole_sample(rng) -> None:
    g = get_geometry("ds2")
    showers = rng.exponential(1.0, (600, g.n_voxels)) * (rng.random((600, g.n_voxels)) < 0.4)
    series = variant_series("layer", showers, g)
    whole = CorrelationAccumulator(variant_pairs("layer", g), n_bootstrap=0)
    halves = [CorrelationAccumulator(variant_pairs("layer", g), n_bootstrap=0) for _ in range(2)]
    for acc in (whole, *halves):
        acc.set_shift(series[:100].mean(0))
    whole.update(series)
    halves[0].update(series[:300])
    halves[1].update(series[300:])
    merged = halves[0].merge(halves[1])
    assert merged.n_showers == 600
    np.testing.assert_allclose(merged.correlation_map(), whole.correlation_map(), atol=1e-12)
