"""Observables of highly granular showers (CaloClouds' set) and the distances that judge them.

Showers come projected onto cells (:class:`~calosurrogate.data.points.CellHits`), cut at half a
MIP as a read-out would. Each observable is a histogram summed over showers:

- ``cell_energy``: the energy of every hit, in MIPs;
- ``layer_energy``: energy per layer (the longitudinal profile);
- ``radial_energy``: energy against the hit's distance to the shower axis in its layer (mm, local frame);
- ``occupancy``: hits per shower;
- ``layer_occupancy``, ``radial_occupancy``: hits per layer and against the distance to the axis;
- ``energy_sum``: visible energy per shower (MeV);
- ``cog_x``, ``cog_y``, ``cog_z``: energy-weighted centre of gravity per shower (x, y in mm in the
  local frame; z as the layer number).

The Jensen-Shannon distance (base 2: 0 for equal histograms, 1 for disjoint ones) compares
reference and generated histograms on the reference's bins; a Poisson bootstrap of both gives
its error. The shower's own direction comes from an energy-weighted principal-component
analysis of its hits' detector positions (CaloClouds3, arXiv:2511.01460).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon

from calosurrogate.data.points import CellHits
from calosurrogate.geometry.planar import PlanarCalorimeter
from calosurrogate.metrics.result import MetricValue
from calosurrogate.metrics.separation import N_BOOTSTRAP, _replicas

OBSERVABLES = ("cell_energy", "layer_energy", "radial_energy", "occupancy", "layer_occupancy", "radial_occupancy",
               "energy_sum", "cog_x", "cog_y", "cog_z")  # fmt: skip


@dataclass
class Observable:
    """One observable's entries: ``values`` with their ``weights`` (None: one each)."""

    values: np.ndarray
    weights: np.ndarray | None = None


def observables(hits: CellHits) -> dict[str, Observable]:
    """Every observable of :data:`OBSERVABLES` for showers already cut at the read-out threshold.

    ``hits.local_xy`` (mm) gives the distance to the axis, and MIPs are not known here: the
    cell energy is in MeV (divide by the MIP to plot it in MIPs).
    """
    shower = hits.shower_index
    n = len(hits)
    radius = np.hypot(hits.local_xy[:, 0], hits.local_xy[:, 1])
    energy = hits.energy.astype(np.float64)
    total = np.bincount(shower, weights=energy, minlength=n)
    safe = np.where(total > 0, total, 1.0)

    def centre(values: np.ndarray) -> np.ndarray:
        return np.bincount(shower, weights=values * energy, minlength=n) / safe

    return {
        "cell_energy": Observable(energy),
        "layer_energy": Observable(hits.layer.astype(np.float64), energy),
        "radial_energy": Observable(radius, energy),
        "occupancy": Observable(np.diff(hits.offsets).astype(np.float64)),
        "layer_occupancy": Observable(hits.layer.astype(np.float64)),
        "radial_occupancy": Observable(radius),
        "energy_sum": Observable(total),
        "cog_x": Observable(centre(hits.local_xy[:, 0])),
        "cog_y": Observable(centre(hits.local_xy[:, 1])),
        "cog_z": Observable(centre(hits.layer.astype(np.float64))),
    }


PER_SHOWER = ("occupancy", "energy_sum", "cog_x", "cog_y", "cog_z")


def observable_bins(name: str, reference: Observable, n_layers: int, mip_mev: float,
                    n_bins: int | None = None) -> np.ndarray:  # fmt: skip
    """The bins of an observable, fixed by the reference: layers one by one, energies of cells on a
    log scale from the half-MIP cut, the rest evenly between the reference's 0.1% and 99.9% quantiles.

    ``n_bins`` (None): 40 for what every hit enters, 20 for one value per shower, whose samples
    are thousands, not millions: the distance's floor from finite samples grows with the bins
    (about ``sqrt(bins / (4 N ln 2))`` for ``N`` showers a side).
    """
    n_bins = n_bins or (20 if name in PER_SHOWER else 40)
    if name in ("layer_energy", "layer_occupancy"):
        return np.arange(n_layers + 1) - 0.5
    values = reference.values[np.isfinite(reference.values)]
    if name == "cell_energy":
        top = max(float(np.quantile(values, 0.9999)) if len(values) else 1.0, mip_mev)
        return np.geomspace(0.5 * mip_mev, 1.001 * top, n_bins + 1)
    if name in ("radial_energy", "radial_occupancy"):
        return np.linspace(0.0, max(float(np.quantile(values, 0.999)), 1e-6), n_bins + 1) if len(values) \
            else np.linspace(0, 1, n_bins + 1)  # fmt: skip
    low, high = np.quantile(values, [0.001, 0.999]) if len(values) else (0.0, 1.0)
    if name == "occupancy":  # integers: bins of whole counts
        step = max(1, int(np.ceil((high - low) / n_bins)))
        return np.arange(np.floor(low) - 0.5, np.ceil(high) + step + 0.5, step)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, n_bins + 1)


def observable_counts(observable: Observable, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
    """An observable's histogram on ``bins``: summed weights (counts when unweighted), summed
    squared weights (None when unweighted) and the weight outside the bins."""
    values = np.asarray(observable.values, dtype=np.float64)
    if observable.weights is None:
        counts = np.histogram(values, bins=bins)[0].astype(np.float64)
        return counts, None, float(len(values) - counts.sum())
    weights = np.asarray(observable.weights, dtype=np.float64)
    counts = np.histogram(values, bins, weights=weights)[0]
    return counts, np.histogram(values, bins, weights=weights**2)[0], float(weights.sum() - counts.sum())


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) of stacked count arrays ``(..., n)``; an empty histogram
    against a full one is 1, two empty ones 0."""
    p, q = np.atleast_2d(p).astype(np.float64), np.atleast_2d(q).astype(np.float64)
    p_empty, q_empty = p.sum(-1) == 0, q.sum(-1) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = jensenshannon(p, q, base=2, axis=-1)
    return np.where(p_empty ^ q_empty, 1.0, np.where(p_empty & q_empty, 0.0, np.nan_to_num(out, nan=0.0)))


def jensen_shannon_from_counts(reference: np.ndarray, generated: np.ndarray, name: str = "jsd", seed: int = 0,
                               reference_sumw2: np.ndarray | None = None,
                               generated_sumw2: np.ndarray | None = None) -> MetricValue:  # fmt: skip
    """Jensen-Shannon distance (base 2) of two histograms on the same bins, with the spread of a
    Poisson bootstrap of both as its error (weighted histograms with their summed squared weights)."""
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    value = float(_jsd(reference, generated)[0])
    rng = np.random.default_rng(seed)
    boot = _jsd(_replicas(reference, reference_sumw2, rng), _replicas(generated, generated_sumw2, rng))
    return MetricValue(name, value, float(boot.std()), {"error": f"std of {N_BOOTSTRAP} Poisson resamplings"})


def jensen_shannon(name: str, reference: Observable, generated: Observable, bins: np.ndarray,
                   seed: int = 0) -> MetricValue:  # fmt: skip
    """The Jensen-Shannon distance of one observable on ``bins``."""
    ref, ref_w2, _ = observable_counts(reference, bins)
    gen, gen_w2, _ = observable_counts(generated, bins)
    result = jensen_shannon_from_counts(ref, gen, f"jsd/{name}", seed, ref_w2, gen_w2)
    return MetricValue(result.name, result.value, result.error, {**result.settings, "n_bins": len(bins) - 1})


def principal_axes(hits: CellHits, geometry: PlanarCalorimeter, directions: np.ndarray, entry_points: np.ndarray,
                   top_fraction: float | None = None) -> np.ndarray:  # fmt: skip
    """Each shower's direction from the energy-weighted principal-component analysis of its hits'
    detector positions ``(x, y, z)`` (mm): the covariance's leading eigenvector, pointing into the
    detector. ``top_fraction`` keeps only that fraction of each shower's hits with the most energy
    (at least three). Returns unit vectors ``(N, 3)``; NaN for a shower with fewer than three hits.

    ``directions`` and ``entry_points`` (the shower's conditions) place the local frame back in the detector.
    """
    n = len(hits)
    shower = hits.shower_index
    keep = np.ones(len(shower), dtype=bool)
    if top_fraction is not None:
        order = np.lexsort((-hits.energy, shower))  # by shower, most energetic first
        counts = np.diff(hits.offsets)
        rank = np.arange(len(order)) - np.repeat(hits.offsets[:-1], counts)
        wanted = np.maximum(np.ceil(top_fraction * counts), 3).astype(np.int64)
        keep = np.zeros(len(shower), dtype=bool)
        keep[order[rank < np.repeat(wanted, counts)]] = True
    shifts = geometry.shifts(directions, entry_points)
    s, layer = shower[keep], hits.layer[keep]
    xy = geometry.to_global(hits.local_xy[keep], layer, shifts[s, layer])
    positions = np.column_stack([xy, geometry.layer_z[layer]])
    w = hits.energy[keep].astype(np.float64)
    total = np.bincount(s, weights=w, minlength=n)
    safe = np.where(total > 0, total, 1.0)
    mean = np.stack([np.bincount(s, weights=w * positions[:, k], minlength=n) for k in range(3)], -1) / safe[:, None]
    centred = positions - mean[s]
    cov = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = cov[:, b, a] = np.bincount(s, weights=w * centred[:, a] * centred[:, b], minlength=n)
    _, vectors = np.linalg.eigh(cov)
    axis = vectors[:, :, -1]
    axis *= np.where(axis[:, 2:3] < 0, -1.0, 1.0)
    axis[np.bincount(s, minlength=n) < 3] = np.nan
    return axis


def angular_errors(axes: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Angles (radians) between found axes and true directions, ``(N,)``."""
    cosine = np.clip(np.abs(np.sum(axes * directions, axis=-1)), 0.0, 1.0)
    return np.arccos(cosine)
