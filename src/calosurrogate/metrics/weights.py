"""Per-shower weights (from a reweighting, for instance): their checks and effective sample size.

A weighted sample of ``n`` showers carries the statistical power of about
``n_eff = (sum w)^2 / sum w^2`` unweighted ones (Kish's effective sample size): ``n`` for
uniform weights, 1 when one shower carries all the weight.
"""

from __future__ import annotations

import numpy as np


def check_weights(weights: np.ndarray, n: int, what: str = "weights") -> np.ndarray:
    """``weights`` as a float64 ``(n,)`` array.

    Raises:
        ValueError: If their number is not ``n``, one is negative or not finite, or all are zero.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{what}: {len(w)} weights for {n} showers")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: {int((~np.isfinite(w)).sum())} weights are not finite")
    if (w < 0).any():
        raise ValueError(f"{what}: {int((w < 0).sum())} weights are negative")
    if w.sum() <= 0:
        raise ValueError(f"{what}: every weight is zero")
    return w


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weight at all)."""
    w = np.asarray(weights, dtype=np.float64)
    total_squared = float((w**2).sum())
    return float(w.sum() ** 2 / total_squared) if total_squared > 0 else 0.0
