"""Shower shapes of crystal-calorimeter images, as ParaFlow judges them.

Definitions (../shared/spec/evaluation.md, section 9): the energy of the brightest and of the
second-brightest crystal; the width ``w = sum(r_i E_i) / sum(E_i)`` with ``r_i`` the distance of
crystal i to the energy barycentre in crystal widths; ``R9``, the energy of the 3 x 3 crystals
around the brightest (clipped at the image's edge) over the total; and the number of clusters
that DBSCAN (scikit-learn's, eps 1.5 crystal widths, one point per cluster at least) finds among
the crystals above 400 MeV, so that diagonal neighbours join and a gap of one crystal separates.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN

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
