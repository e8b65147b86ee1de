"""Calorimeter response and resolution against the incident energy.

Response: the mean of ``E_tot / E_inc`` in a bin of incident energy; resolution: its standard
deviation over its mean (the relative energy resolution sigma_E / E). A physicist reads these
two curves before any histogram: a surrogate that is right on average but wrong at low or high
energy shows here first.
"""

from __future__ import annotations

import numpy as np

MAX_DISCRETE_ENERGIES = 20


def incident_energy_bins(incident_energy: np.ndarray, n_bins: int = 8) -> np.ndarray:
    """Bin edges in MeV: one bin per energy for a discrete spectrum (at most
    :data:`MAX_DISCRETE_ENERGIES` distinct values, as dataset 1's powers of two), else ``n_bins``
    bins evenly spaced in log E over the whole decades the energies span (1 GeV - 1 TeV for
    datasets 2 and 3): two samples of one spectrum, such as a reference's two halves, get the
    same bins.

    Args:
        incident_energy: ``(N,)`` or ``(N, 1)`` incident energies in MeV (the reference's).
    """
    energies = np.asarray(incident_energy, dtype=np.float64).ravel()
    energies = energies[np.isfinite(energies) & (energies > 0)]
    if len(energies) == 0:
        raise ValueError("no positive finite incident energy to bin")
    distinct = np.unique(energies)
    if len(distinct) <= MAX_DISCRETE_ENERGIES:
        if len(distinct) == 1:
            return np.array([distinct[0] / 1.01, distinct[0] * 1.01])
        middles = np.sqrt(distinct[:-1] * distinct[1:])  # geometric midpoints: each energy alone in its bin
        first, last = distinct[0] ** 2 / middles[0], distinct[-1] ** 2 / middles[-1]
        return np.concatenate([[first], middles, [last]])
    low, high = np.floor(np.log10(distinct[0])), np.ceil(np.log10(distinct[-1]))
    edges = np.logspace(low, max(high, low + 1), n_bins + 1)
    if edges[-1] <= distinct[-1]:  # the largest energy on a decade: inside the last (right-open) bin
        edges[-1] = np.nextafter(distinct[-1], np.inf)
    return edges


def response_resolution(
    incident_energy: np.ndarray, e_tot: np.ndarray, edges: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Response and resolution in each incident-energy bin, with their statistical errors.

    Args:
        incident_energy: ``(N,)`` incident energies in MeV.
        e_tot: ``(N,)`` deposited energies in MeV.
        edges: ``(B + 1,)`` incident-energy bin edges in MeV.
        weights: ``(N,)`` per-shower weights (None: all 1): weighted mean and standard deviation,
            errors from the bin's effective count ``(sum w)^2 / sum w^2``.

    Returns:
        Arrays of length B: ``centre`` (geometric, MeV), ``count``, ``response`` (mean E_tot/E_inc)
        and ``response_error`` (standard error of the mean), ``resolution`` (std / mean) and
        ``resolution_error`` (``resolution / sqrt(2 (n - 1))``, exact for a Gaussian); NaN where a
        bin holds fewer than two showers (effective showers, when weighted).
    """
    e_inc = np.asarray(incident_energy, dtype=np.float64).ravel()
    ratio = np.asarray(e_tot, dtype=np.float64).ravel() / e_inc
    w_all = np.ones(len(ratio)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    which = np.digitize(e_inc, edges) - 1
    n_bins = len(edges) - 1
    out = {k: np.full(n_bins, np.nan) for k in ("response", "response_error", "resolution", "resolution_error")}
    out["centre"] = np.sqrt(edges[:-1] * edges[1:])
    out["count"] = np.zeros(n_bins, dtype=np.int64)
    for b in range(n_bins):
        values, w = ratio[which == b], w_all[which == b]
        out["count"][b] = len(values)
        v1, v2 = w.sum(), (w**2).sum()
        n = v1**2 / v2 if v2 > 0 else 0.0  # the effective count; the count itself without weights
        if n < 2:
            continue
        mean = float((w * values).sum() / v1)
        # the unbiased weighted variance of reliability weights; the sample variance when all are 1
        std = float(np.sqrt((w * (values - mean) ** 2).sum() / (v1 - v2 / v1)))
        out["response"][b], out["response_error"][b] = mean, std / np.sqrt(n)
        if mean != 0:
            out["resolution"][b] = std / mean
            out["resolution_error"][b] = out["resolution"][b] / np.sqrt(2 * (n - 1))
    return out
