"""Correlation Frobenius Distance (CFD), streamed, for any cylindrical geometry.

From the seed study "Calorimeter surrogates" (spec section 8): Pearson correlations over
showers of raw energies (MeV, after the threshold); ``CFD = ||C_reference - C_generated||_F``.

Variants:

- ``voxel``: each voxel against the same voxel one layer deeper, a ``(L - 1, alpha, r)`` tensor;
  where consecutive layers differ in binning (dataset 1), against the deeper voxel that holds
  its centre (voxels whose centre lies outside the deeper layer are left out);
- ``layer``: the full ``L x L`` matrix of layer-energy correlations;
- ``group``: energies summed over alpha, averaged over blocks of 5 consecutive layers, each
  block against the next per radial bin, ``(G - 1, r)`` (needs a regular geometry).

A constant series (e.g. a voxel that is always zero) has correlation 0 with everything,
itself included, instead of NaN. Errors come from Poisson-bootstrap replicas accumulated in
the same pass (each shower weighted by a Poisson(1) draw per replica).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.metrics.result import MetricValue

VARIANTS = ("voxel", "layer", "group")
GROUP_SIZE = 5


@dataclass(frozen=True)
class CorrelationPairs:
    """Which series to correlate: ``a[k]`` with ``b[k]``; results reshape to ``shape``.

    Attributes:
        variant: One of :data:`VARIANTS`.
        a: Indices into the variant's per-shower series, ``(P,)``.
        b: Indices, ``(P,)``.
        shape: Shape of the correlation map (product = P).
    """

    variant: str
    a: np.ndarray
    b: np.ndarray
    shape: tuple[int, ...]


def variant_series(variant: str, showers: np.ndarray, geometry: CylindricalGeometry) -> np.ndarray:
    """The per-shower series a variant correlates, from thresholded showers ``(N, n_voxels)``."""
    if variant == "voxel":
        return showers
    if variant == "layer":
        return np.add.reduceat(showers, geometry.layer_offsets[:-1], axis=1)
    if variant == "group":
        n_layers = geometry.shape[0]
        radial = geometry.to_images(showers).sum(axis=2)  # (N, L, r)
        groups = [radial[:, g : g + GROUP_SIZE].mean(axis=1) for g in range(0, n_layers, GROUP_SIZE)]
        return np.stack(groups, axis=1).reshape(len(showers), -1)
    raise ValueError(f"unknown CFD variant {variant!r}; use one of {VARIANTS}")


def variant_pairs(variant: str, geometry: CylindricalGeometry) -> CorrelationPairs | None:
    """The pairs of a variant for a geometry, or None when the variant does not apply."""
    if variant == "voxel":
        a, b = [], []
        for i in range(geometry.n_layers - 1):
            here, deeper = geometry.layer_slice(i), geometry.layer_slice(i + 1)
            partner = _same_position_voxels(geometry, i)
            inside = partner >= 0
            a.append(np.arange(here.start, here.stop)[inside])
            b.append(deeper.start + partner[inside])
        if not a or not sum(len(x) for x in a):
            return None
        shape = (geometry.n_layers - 1, *geometry.shape[1:]) if geometry.is_regular else (sum(len(x) for x in a),)
        return CorrelationPairs(variant, np.concatenate(a), np.concatenate(b), shape)
    if variant == "layer":
        n = geometry.n_layers
        ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        return CorrelationPairs(variant, ii.ravel(), jj.ravel(), (n, n))
    if variant == "group":
        if not geometry.is_regular:
            return None
        n_layers, _, n_r = geometry.shape
        n_groups = -(-n_layers // GROUP_SIZE)
        if n_groups < 2:
            return None
        a = np.arange((n_groups - 1) * n_r)
        return CorrelationPairs(variant, a, a + n_r, (n_groups - 1, n_r))
    raise ValueError(f"unknown CFD variant {variant!r}; use one of {VARIANTS}")


def _same_position_voxels(geometry: CylindricalGeometry, index: int) -> np.ndarray:
    """For each voxel of layer ``index``, the voxel of the next layer holding its centre (-1: none).

    With identical binnings this is the same voxel; otherwise (dataset 1) the centre
    ``(r_mid, alpha_mid)`` is looked up in the deeper layer's bins.
    """
    layer, deeper = geometry.layers[index], geometry.layers[index + 1]
    r_mid = np.tile(layer.r_mid, layer.n_alpha)
    alpha_mid = np.repeat(layer.alpha_mid, layer.n_r)
    r_bin = np.searchsorted(np.asarray(deeper.r_edges), r_mid, side="right") - 1
    alpha_edges = np.linspace(-np.pi, np.pi, deeper.n_alpha + 1)
    alpha_bin = np.clip(np.searchsorted(alpha_edges, alpha_mid, side="right") - 1, 0, deeper.n_alpha - 1)
    return np.where((r_bin >= 0) & (r_bin < deeper.n_r), alpha_bin * deeper.n_r + r_bin, -1)


class CorrelationAccumulator:
    """Streamed Pearson correlations of fixed series pairs, with bootstrap replicas.

    Args:
        pairs: What to correlate.
        n_bootstrap: Number of Poisson-bootstrap replicas kept beside the estimate.
        seed: Seed of the bootstrap weights.
    """

    def __init__(self, pairs: CorrelationPairs, n_bootstrap: int = 20, seed: int = 0) -> None:
        self.pairs = pairs
        self.n_bootstrap = n_bootstrap
        self._rng = np.random.default_rng(seed)
        self._weights = np.zeros(n_bootstrap + 1)  # sum of weights per replica (row 0: the estimate)
        self._series_sums: np.ndarray | None = None  # (2, n_bootstrap + 1, n_series): sums of s and s^2
        self._pair_sums = np.zeros((n_bootstrap + 1, len(pairs.a)))  # sums of s_a * s_b per pair
        self._shift: np.ndarray | None = None

    def update(self, series: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add showers: ``series`` is ``(n, n_series)`` from :func:`variant_series`, with optional
        per-shower ``weights`` ``(n,)`` (the correlations become weighted ones).

        First and second moments are summed per series and only the cross products per pair,
        so the cost is about three weighted sums over the series instead of five over the pairs.
        """
        series = np.asarray(series, dtype=np.float64)
        if self._shift is None:
            # Centring on the first block's means keeps the sums of squares well conditioned.
            self._shift = series.mean(axis=0)
        centred = series - self._shift
        shower_weights = np.ones(len(series)) if weights is None else np.asarray(weights, dtype=np.float64)
        weights = np.vstack([np.ones(len(series)), self._rng.poisson(1.0, (self.n_bootstrap, len(series)))])
        weights *= shower_weights
        if self._series_sums is None:
            self._series_sums = np.zeros((2, self.n_bootstrap + 1, series.shape[1]))
        self._weights += weights.sum(axis=1)
        self._series_sums[0] += weights @ centred
        # np.take gathers columns about ten times faster than fancy indexing.
        products = np.take(centred, self.pairs.a, axis=1) * np.take(centred, self.pairs.b, axis=1)
        self._pair_sums += weights @ products
        np.multiply(centred, centred, out=centred)
        self._series_sums[1] += weights @ centred

    def merge(self, other: CorrelationAccumulator) -> CorrelationAccumulator:
        """A new accumulator holding both samples (bootstrap replicas stay valid)."""
        if other._shift is not None and self._shift is not None and not np.array_equal(self._shift, other._shift):
            raise ValueError("can only merge accumulators that share their centring; use shared_shift()")
        merged = CorrelationAccumulator(self.pairs, self.n_bootstrap)
        # Each replica of the sum is a Poisson bootstrap of the union.
        merged._weights = self._weights + other._weights
        merged._pair_sums = self._pair_sums + other._pair_sums
        parts = [sums for sums in (self._series_sums, other._series_sums) if sums is not None]
        merged._series_sums = sum(parts[1:], parts[0].copy()) if parts else None
        merged._shift = self._shift if self._shift is not None else other._shift
        return merged

    def set_shift(self, shift: np.ndarray) -> None:
        """Fix the centring before any update (so that accumulators can be merged)."""
        self._shift = np.asarray(shift, dtype=np.float64)

    @property
    def is_centred(self) -> bool:
        """Whether the centring is fixed (by :meth:`set_shift` or the first update)."""
        return self._shift is not None

    @property
    def n_showers(self) -> int:
        """Number of showers added (their summed weight, rounded, when weighted)."""
        return int(np.rint(self._weights[0]))

    def correlations(self) -> np.ndarray:
        """Correlations ``(n_bootstrap + 1, P)``: row 0 the estimate, the rest the replicas.

        Pairs where either series is constant get 0.
        """
        if self._series_sums is None:
            return np.zeros_like(self._pair_sums)
        a, b = self.pairs.a, self.pairs.b
        sums, squares = self._series_sums
        sx, sy, sxx, syy, sxy = sums[:, a], sums[:, b], squares[:, a], squares[:, b], self._pair_sums
        w = np.maximum(self._weights[:, None], 1e-300)
        mx, my = sx / w, sy / w
        var_x = sxx / w - mx**2
        var_y = syy / w - my**2
        cov = sxy / w - mx * my
        # Relative tolerance: a constant series leaves only rounding noise in its variance.
        tol_x = 1e-12 * np.maximum(sxx / w, 1e-300)
        tol_y = 1e-12 * np.maximum(syy / w, 1e-300)
        ok = (var_x > tol_x) & (var_y > tol_y)
        corr = np.zeros_like(cov)
        corr[ok] = cov[ok] / np.sqrt(var_x[ok] * var_y[ok])
        return np.clip(corr, -1.0, 1.0)

    def correlation_map(self) -> np.ndarray:
        """The estimate reshaped to the variant's map shape."""
        return self.correlations()[0].reshape(self.pairs.shape)


def cfd_from_accumulators(
    reference: CorrelationAccumulator, generated: CorrelationAccumulator, name: str | None = None
) -> MetricValue:
    """CFD of two accumulated samples: value and the bootstrap standard deviation."""
    diff = reference.correlations() - generated.correlations()
    norms = np.sqrt((diff**2).sum(axis=1))
    variant = reference.pairs.variant
    settings = {
        "variant": variant, "n_bootstrap": reference.n_bootstrap, "reference_showers": reference.n_showers,
        "generated_showers": generated.n_showers, "constant_series": "correlation 0",
        "error": "std over Poisson-bootstrap replicas",
    }  # fmt: skip
    return MetricValue(
        name or f"CFD/{variant}", float(norms[0]), float(norms[1:].std()) if len(norms) > 1 else 0.0, settings
    )


def cfd(
    reference: np.ndarray,
    generated: np.ndarray,
    geometry: CylindricalGeometry,
    variant: str = "voxel",
    n_bootstrap: int = 20,
    seed: int = 0,
) -> MetricValue:
    """CFD of two in-memory sets of thresholded showers ``(N, n_voxels)`` (MeV).

    Raises:
        ValueError: If the variant does not apply to the geometry.
    """
    pairs = variant_pairs(variant, geometry)
    if pairs is None:
        raise ValueError(f"CFD variant {variant!r} does not apply to geometry {geometry.name!r}")
    acc_ref = CorrelationAccumulator(pairs, n_bootstrap, seed)
    acc_gen = CorrelationAccumulator(pairs, n_bootstrap, seed + 1)
    acc_ref.update(variant_series(variant, reference, geometry))
    acc_gen.update(variant_series(variant, generated, geometry))
    return cfd_from_accumulators(acc_ref, acc_gen)
