"""Precision, recall, density and coverage (PRDC) of a generated sample, by k nearest neighbours.

Naeem et al., "Reliable fidelity and diversity metrics for generative models",
arXiv:2002.09797. Every reference shower owns a ball reaching its k-th nearest reference
neighbour; every generated shower one reaching its k-th nearest generated neighbour:

- precision: the fraction of generated showers inside at least one reference ball (fidelity);
- recall: the fraction of reference showers inside at least one generated ball (diversity);
- density: the number of reference balls holding a generated shower, averaged over generated
  showers and divided by k (1 on average for a perfect generator; above 1 where it crowds
  the reference's dense regions);
- coverage: the fraction of reference balls holding at least one generated shower.

Distances are Euclidean, formed as ``|a|^2 - 2 a.b + |b|^2`` in float64 as the reference
implementation (the ``prdc`` package, which calls scikit-learn) forms them, so the same
arrays give the same four numbers; here they are built one block of rows at a time, so
memory stays at ``chunk_rows`` x N however large the samples.
"""

from __future__ import annotations

import numpy as np

from calosurrogate.metrics.fpd_kpd import normalise_features
from calosurrogate.metrics.result import MetricValue

NAMES = ("precision", "recall", "density", "coverage")


def _squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _distance_block(a: np.ndarray, a_norms: np.ndarray, b: np.ndarray, b_norms: np.ndarray) -> np.ndarray:
    """Euclidean distances ``(len(a), len(b))``, negative rounding clipped to zero."""
    d2 = a @ b.T
    d2 *= -2.0
    d2 += a_norms[:, None]
    d2 += b_norms[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def _kth_neighbour_distances(x: np.ndarray, norms: np.ndarray, nearest_k: int, chunk_rows: int) -> np.ndarray:
    """Distance from each row of ``x`` (squared norms ``norms``) to its ``nearest_k``-th nearest other
    row, shape ``(N,)``."""
    radii = np.empty(len(x))
    for start in range(0, len(x), chunk_rows):
        block = _distance_block(x[start : start + chunk_rows], norms[start : start + chunk_rows], x, norms)
        rows = np.arange(len(block))
        block[rows, start + rows] = 0.0  # a row's distance to itself, exactly
        # the row itself is the nearest (distance 0), so its k-th neighbour is the (k+1)-th smallest
        radii[start : start + len(block)] = np.partition(block, nearest_k, axis=1)[:, nearest_k]
    return radii


def precision_recall_density_coverage(
    reference: np.ndarray,
    generated: np.ndarray,
    nearest_k: int = 5,
    chunk_rows: int = 2048,
    generated_weights: np.ndarray | None = None,
) -> dict[str, float]:
    """The four numbers for two fixed samples.

    Args:
        reference: ``(N, D)`` features of the reference (real) sample, float64.
        generated: ``(M, D)`` features of the generated (fake) sample.
        nearest_k: k of the k-nearest-neighbour balls; both samples need more than k rows.
        chunk_rows: Reference rows per block of the distance matrix.
        generated_weights: ``(M,)`` per-shower weights: precision and density, averages over
            the generated showers, become weighted averages; recall and coverage ask whether
            any generated shower lies near a reference one, which a weight does not change.

    Returns:
        ``{"precision", "recall", "density", "coverage"}``: precision, recall and coverage in
        [0, 1]; density in [0, N / k].
    """
    real = np.ascontiguousarray(reference, dtype=np.float64)
    fake = np.ascontiguousarray(generated, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"PRDC needs two (N, D) arrays of equal D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) <= nearest_k:
        raise ValueError(
            f"PRDC with k={nearest_k} needs more than {nearest_k} showers per sample, got {len(real)} and {len(fake)}"
        )
    real_norms, fake_norms = _squared_norms(real), _squared_norms(fake)
    real_radii = _kth_neighbour_distances(real, real_norms, nearest_k, chunk_rows)
    fake_radii = _kth_neighbour_distances(fake, fake_norms, nearest_k, chunk_rows)
    balls_holding = np.zeros(len(fake), dtype=np.int64)  # per generated shower: reference balls around it
    recalled = np.zeros(len(real), dtype=bool)
    covered = np.zeros(len(real), dtype=bool)
    for start in range(0, len(real), chunk_rows):
        stop = start + chunk_rows
        block = _distance_block(real[start:stop], real_norms[start:stop], fake, fake_norms)
        radii = real_radii[start:stop, None]
        balls_holding += (block < radii).sum(axis=0)
        recalled[start:stop] = (block < fake_radii[None, :]).any(axis=1)
        covered[start:stop] = block.min(axis=1) < real_radii[start:stop]
    w = None if generated_weights is None else np.asarray(generated_weights, dtype=np.float64)
    return {
        "precision": min(float(np.average(balls_holding > 0, weights=w)), 1.0),  # rounding of weighted sums
        "recall": float(recalled.mean()),
        "density": float(np.average(balls_holding, weights=w) / nearest_k),
        "coverage": float(covered.mean()),
    }


def prdc(
    reference: np.ndarray,
    generated: np.ndarray,
    nearest_k: int = 5,
    sample_size: int = 10_000,
    num_draws: int = 5,
    normalise: bool = True,
    seed: int = 42,
    generated_weights: np.ndarray | None = None,
) -> dict[str, MetricValue]:
    """PRDC at a fixed sample size, averaged over independent draws, with their spread as the error.

    The values depend on the sample size (a ball shrinks as its sample grows), so every draw
    takes ``min(sample_size, N)`` showers of each set without replacement, and the floor a
    caller computes between two reference halves should use the same size.

    Args:
        reference: ``(N_ref, D)`` high-level features of the reference sample.
        generated: ``(N_gen, D)`` of the generated one.
        nearest_k: k of the neighbour balls (5, the reference implementation's example).
        sample_size: Showers per set and draw (full pairwise distances grow as its square).
        num_draws: Independent draws; the error is their standard deviation.
        normalise: Divide both by the reference's per-feature max |value| first, as for FPD.
        generated_weights: ``(N_gen,)`` per-shower weights (see
            :func:`precision_recall_density_coverage`).

    Returns:
        ``{"precision": MetricValue, "recall": ..., "density": ..., "coverage": ...}``.
    """
    x, y = normalise_features(reference, generated) if normalise else (reference, generated)
    size = min(sample_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(num_draws):
        a = x[np.sort(rng.choice(len(x), size=size, replace=False))]
        rows = np.sort(rng.choice(len(y), size=size, replace=False))
        w = None if generated_weights is None else np.asarray(generated_weights)[rows]
        draws.append(precision_recall_density_coverage(a, y[rows], nearest_k, generated_weights=w))
    settings = {
        "nearest_k": nearest_k, "sample_size": size, "num_draws": num_draws, "normalise": normalise,
        "seed": seed, "error": "standard deviation over the draws" if num_draws > 1 else "none (one draw)",
        "generated_weights": "precision and density weighted" if generated_weights is not None else None,
    }  # fmt: skip
    out = {}
    for name in NAMES:
        values = np.array([d[name] for d in draws])
        error = float(values.std(ddof=1)) if num_draws > 1 else 0.0
        out[name] = MetricValue(name, float(values.mean()), error, settings)
    return out
