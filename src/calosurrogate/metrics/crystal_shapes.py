"""Shower shapes of crystal-calorimeter images, as ParaFlow judges them.

Definitions (../shared/spec/evaluation.md, section 9): the energy of the brightest and of the
second-brightest crystal; the width ``w = sum(r_i E_i) / sum(E_i)`` with ``r_i`` the distance of
crystal i to the energy barycentre in crystal widths; ``R9``, the energy of the 3 x 3 crystals
around the brightest (clipped at the image's edge) over the total; and the number of clusters
that DBSCAN (scikit-learn's, eps 1.5 crystal widths, one point per cluster at least) finds among
the crystals above 400 MeV, so that diagonal neighbours join and a gap of one crystal separates.
Agreement per shape: separation power, inclusively and in slices of the plate's thickness and
distance, and the mean of each shape over the grid of the two.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.cluster import DBSCAN

from calosurrogate.metrics.result import MetricValue
from calosurrogate.metrics.separation import separation_power_from_counts

SHAPES = ("brightest", "second_brightest", "width", "r9", "n_clusters")
CLUSTER_THRESHOLD_MEV = 400.0
CLUSTER_EPS = 1.5


def n_clusters(image: np.ndarray, threshold_mev: float = CLUSTER_THRESHOLD_MEV, eps: float = CLUSTER_EPS) -> int:
    """Number of DBSCAN clusters of the crystals above ``threshold_mev`` in one ``(n_x, n_y)`` image."""
    points = np.argwhere(image > threshold_mev)
    if len(points) == 0:
        return 0
    labels = DBSCAN(eps=eps, min_samples=1).fit_predict(points)
    return int(labels.max() + 1)


def crystal_shower_shapes(images: np.ndarray, threshold_mev: float = CLUSTER_THRESHOLD_MEV) -> dict[str, np.ndarray]:
    """Shapes of crystal images.

    Args:
        images: Crystal energies (MeV), shape ``(N, n_x, n_y)``.
        threshold_mev: Crystals above this enter the cluster count.

    Returns:
        ``{name: (N,)}`` for ``brightest`` and ``second_brightest`` (MeV), ``width`` (crystal
        widths), ``r9`` and ``n_clusters``; an empty image has width 0 and R9 0.
    """
    x = np.asarray(images, dtype=np.float64)
    n, nx, ny = x.shape
    flat = x.reshape(n, -1)
    ordered = np.sort(flat, axis=1)
    total = flat.sum(1)
    safe = np.where(total > 0, total, 1.0)
    ix, iy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    cx = (flat * ix.ravel()).sum(1) / safe
    cy = (flat * iy.ravel()).sum(1) / safe
    distance = np.hypot(ix.ravel()[None] - cx[:, None], iy.ravel()[None] - cy[:, None])
    width = (flat * distance).sum(1) / safe
    bx, by = np.unravel_index(flat.argmax(1), (nx, ny))
    near = (np.abs(ix.ravel()[None] - bx[:, None]) <= 1) & (np.abs(iy.ravel()[None] - by[:, None]) <= 1)
    r9 = (flat * near).sum(1) / safe
    clusters = np.array([n_clusters(image, threshold_mev) for image in x], dtype=np.float64)
    return {"brightest": ordered[:, -1], "second_brightest": ordered[:, -2] if flat.shape[1] > 1 else np.zeros(n),
            "width": width, "r9": r9, "n_clusters": clusters}  # fmt: skip


# ParaFlow's slices of the plate's thickness (X0) and distance (cm)
SLICE_EDGES = {"plate_thickness": (0.5, 0.75, 1.0, 1.25, 1.5), "plate_distance": (50.0, 60.0, 70.0, 80.0, 90.0)}


def shape_bins(name: str, reference: np.ndarray, n_bins: int = 40) -> np.ndarray:
    """Common bins of one shape, from the reference's 0.1-99.9% range (integers for cluster counts)."""
    if name == "n_clusters":
        return np.arange(-0.5, max(float(np.max(reference)), 3.0) + 1.5)
    low, high = np.quantile(reference, [0.001, 0.999])
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, n_bins + 1)


def _power(reference: np.ndarray, generated: np.ndarray, bins: np.ndarray, name: str) -> MetricValue:
    counts = [np.histogram(v[np.isfinite(v)], bins=bins)[0] for v in (reference, generated)]
    return separation_power_from_counts(counts[0], counts[1], name=name)


def shape_separation(reference: dict[str, np.ndarray], generated: dict[str, np.ndarray],
                     mask_reference: np.ndarray | None = None, mask_generated: np.ndarray | None = None,
                     bins: dict[str, np.ndarray] | None = None) -> dict[str, MetricValue]:  # fmt: skip
    """Separation power of every shape between two samples (optionally a slice of each), on bins
    fixed by the whole reference so that slices are comparable."""
    bins = bins or {k: shape_bins(k, reference[k]) for k in reference}
    out = {}
    for name in reference:
        r = reference[name] if mask_reference is None else reference[name][mask_reference]
        g = generated[name] if mask_generated is None else generated[name][mask_generated]
        out[name] = _power(r, g, bins[name], f"separation_power/{name}")
    return out


def sliced_shape_separation(reference: dict[str, np.ndarray], reference_conditions: dict[str, np.ndarray],
                            generated: dict[str, np.ndarray], generated_conditions: dict[str, np.ndarray],
                            edges: dict[str, tuple[float, ...]] = SLICE_EDGES) -> dict[str, dict[str, MetricValue]]:  # fmt: skip
    """Separation power of every shape inclusively (key ``"all"``) and in each slice of each
    condition (keys like ``"plate_thickness 0.5-0.75"``)."""
    bins = {k: shape_bins(k, reference[k]) for k in reference}
    out = {"all": shape_separation(reference, generated, bins=bins)}
    for condition, cuts in edges.items():
        r, g = np.ravel(reference_conditions[condition]), np.ravel(generated_conditions[condition])
        for low, high in itertools.pairwise(cuts):
            inside_r = (r >= low) & (r <= high if high == cuts[-1] else r < high)
            inside_g = (g >= low) & (g <= high if high == cuts[-1] else g < high)
            if inside_r.sum() and inside_g.sum():
                out[f"{condition} {low:g}-{high:g}"] = shape_separation(reference, generated, inside_r, inside_g, bins)
    return out


def mean_shape_grid(shapes: dict[str, np.ndarray], conditions: dict[str, np.ndarray],
                    edges: dict[str, tuple[float, ...]] = SLICE_EDGES) -> dict[str, np.ndarray]:  # fmt: skip
    """Mean of every shape in each cell of the grid of the two conditions: ``{name: (n_d, n_b)}``
    (NaN in an empty cell)."""
    (first, first_edges), (second, second_edges) = edges.items()
    i = np.clip(np.digitize(np.ravel(conditions[first]), first_edges[1:-1]), 0, len(first_edges) - 2)
    j = np.clip(np.digitize(np.ravel(conditions[second]), second_edges[1:-1]), 0, len(second_edges) - 2)
    cell = i * (len(second_edges) - 1) + j
    size = (len(first_edges) - 1) * (len(second_edges) - 1)
    counts = np.bincount(cell, minlength=size).astype(float)
    out = {}
    for name, values in shapes.items():
        sums = np.bincount(cell, weights=values, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (sums / counts).reshape(len(first_edges) - 1, len(second_edges) - 1)
    return out
