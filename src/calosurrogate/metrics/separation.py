"""Histograms on the official binnings and their separation power.

``S = 1/2 sum_i (h1_i - h2_i)^2 / (h1_i + h2_i + 1e-16)`` with ``h = density * bin width``, i.e.
the fraction of in-range entries per bin (0: identical, 1: disjoint); entries outside the bin
range are dropped before normalising, as in the reference evaluation, and counted here.
Binnings: ../shared/spec/evaluation.md section 5.

Weighted samples (a reweighted simulation, say) fill each bin with the sum of their weights;
the bootstrap error then draws each bin as ``(sum w^2 / sum w) * Poisson(n_eff)`` with the bin's
effective count ``n_eff = (sum w)^2 / sum w^2``, which is the plain Poisson resampling when every
weight is 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.metrics.features import HighLevelFeatures
from calosurrogate.metrics.response import incident_energy_bins
from calosurrogate.metrics.result import MetricValue

N_BOOTSTRAP = 50


@dataclass
class HistogramPair:
    """Reference and generated counts of one observable on common bins.

    Attributes:
        key: Observable id, e.g. ``"E_layer/12"``.
        label: Axis label with units.
        bins: Bin edges, ``(n + 1,)``.
        reference: Counts, ``(n,)``.
        generated: Counts, ``(n,)``.
        reference_outside: Reference entries outside the bin range (dropped); their summed
            weight for a weighted sample.
        generated_outside: Generated entries outside the bin range (dropped), likewise.
        log_x: Whether the bins are logarithmic (for plotting).
        reference_sumw2, generated_sumw2: Sums of squared weights per bin of a weighted sample
            (None: unweighted, the counts are entries).
    """

    key: str
    label: str
    bins: np.ndarray
    reference: np.ndarray
    generated: np.ndarray
    reference_outside: float = 0
    generated_outside: float = 0
    log_x: bool = False
    reference_sumw2: np.ndarray | None = None
    generated_sumw2: np.ndarray | None = None

    def separation_power(self, seed: int = 0) -> MetricValue:
        """S of this pair, with a Poisson-bootstrap error over both histograms' counts."""
        return separation_power_from_counts(
            self.reference, self.generated, name=f"separation_power/{self.key}", seed=seed,
            reference_sumw2=self.reference_sumw2, generated_sumw2=self.generated_sumw2,
        )  # fmt: skip


def histogram_counts(values: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, int]:
    """Counts of finite ``values`` inside ``bins`` and the number of entries outside (NaN included)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, _ = np.histogram(values[np.isfinite(values)], bins=bins)
    return counts.astype(np.int64), int(len(values) - counts.sum())


def weighted_counts(values: np.ndarray, bins: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Summed weights of finite ``values`` per bin, summed squared weights per bin, and the weight outside."""
    values = np.asarray(values, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    inside = np.isfinite(values)
    sums, _ = np.histogram(values[inside], bins=bins, weights=weights[inside])
    squares, _ = np.histogram(values[inside], bins=bins, weights=weights[inside] ** 2)
    return sums, squares, float(weights.sum() - sums.sum())


def _replicas(counts: np.ndarray, sumw2: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Poisson-bootstrap replicas ``(N_BOOTSTRAP, n)`` of a histogram, weighted or not (module doc)."""
    if sumw2 is None:
        return rng.poisson(counts, (N_BOOTSTRAP, len(counts)))
    sumw2 = np.asarray(sumw2, dtype=np.float64)
    filled = sumw2 > 0
    n_eff = np.divide(counts**2, sumw2, out=np.zeros(len(counts)), where=filled)
    scale = np.divide(sumw2, counts, out=np.zeros(len(counts)), where=filled & (counts > 0))
    return rng.poisson(n_eff, (N_BOOTSTRAP, len(counts))) * scale


def _separation(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """S for (possibly stacked, ``(..., n)``) count arrays; an empty histogram against a full one gives 1."""
    p_tot = p_counts.sum(-1, keepdims=True)
    q_tot = q_counts.sum(-1, keepdims=True)
    p = np.divide(p_counts, p_tot, out=np.zeros(p_counts.shape), where=p_tot > 0)
    q = np.divide(q_counts, q_tot, out=np.zeros(q_counts.shape), where=q_tot > 0)
    s = 0.5 * ((p - q) ** 2 / (p + q + 1e-16)).sum(-1)
    one_empty = (p_tot[..., 0] == 0) ^ (q_tot[..., 0] == 0)
    return np.where(one_empty, 1.0, s)


def separation_power_from_counts(
    reference: np.ndarray,
    generated: np.ndarray,
    name: str = "separation_power",
    seed: int = 0,
    reference_sumw2: np.ndarray | None = None,
    generated_sumw2: np.ndarray | None = None,
) -> MetricValue:
    """Separation power of two histograms on the same bins, with a Poisson-bootstrap error.

    ``reference`` and ``generated`` hold counts, or summed weights with their summed squared
    weights in ``*_sumw2``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    value = float(_separation(reference, generated))
    rng = np.random.default_rng(seed)
    boot = _separation(_replicas(reference, reference_sumw2, rng), _replicas(generated, generated_sumw2, rng))
    return MetricValue(
        name, value, float(boot.std()), {"error": f"std of {N_BOOTSTRAP} Poisson resamplings of the counts"}
    )


def separation_power(reference: np.ndarray, generated: np.ndarray, bins: np.ndarray, seed: int = 0) -> MetricValue:
    """Separation power of two samples histogrammed on ``bins`` (the reference definition)."""
    ref_counts, ref_out = histogram_counts(reference, bins)
    gen_counts, gen_out = histogram_counts(generated, bins)
    result = separation_power_from_counts(ref_counts, gen_counts, seed=seed)
    settings = {**result.settings, "reference_outside": ref_out, "generated_outside": gen_out, "n_bins": len(bins) - 1}
    return MetricValue(result.name, result.value, result.error, settings)


# ------------------------------------------------------------------------------------ binnings
def _is_ds1(geometry: CylindricalGeometry) -> bool:
    return geometry.name.startswith("ds1") or not geometry.is_regular


def _range_for(geometry: CylindricalGeometry, layer_id: int, kind: str) -> float:
    """Half-range L (mm) of the EC/width binnings for one layer (spec section 5)."""
    if not _is_ds1(geometry):
        return {"ec": 30.0, "width": 30.0, "ec_r": 42.0, "width_r": 20.0}[kind]
    if kind == "ec":
        return 500.0 if layer_id in (12, 13) else 100.0
    if kind == "width":
        return 400.0 if layer_id in (12, 13) else 100.0
    return 1500.0 if layer_id in (12, 13, 14) else 500.0


ENERGY_RATIO_BINS = 4  # incident-energy bins of the E_tot/E_inc histograms of a continuous spectrum


def _energy_text(mev: float) -> str:
    return f"{mev / 1e3:.3g} GeV" if mev < 1e6 else f"{mev / 1e6:.3g} TeV"


def _log_bins(low: float, high: float, n_edges: int) -> np.ndarray | None:
    if not np.isfinite(high) or high <= low:
        return None
    return np.logspace(np.log10(low), np.log10(high), n_edges)


def ds1_energy_ratio_bins(geometry: CylindricalGeometry, incident_energy_mev: float) -> np.ndarray:
    """E_tot/E_inc bins for one discrete dataset-1 energy."""
    if geometry.particle == "photon" and incident_energy_mev >= 4096:
        return np.linspace(0.9, 1.1, 21)
    return np.linspace(0.4, 1.4, 21)


def feature_histograms(
    geometry: CylindricalGeometry,
    reference: HighLevelFeatures,
    generated: HighLevelFeatures,
    min_energy: float,
    generated_weights: np.ndarray | None = None,
) -> list[HistogramPair]:
    """Every high-level observable histogrammed on the official binning (bins set by the reference);
    with ``generated_weights`` ``(N_gen,)`` the generated histograms hold summed weights."""
    pairs: list[HistogramPair] = []
    all_generated = slice(None)

    def add(
        key: str, label: str, ref: np.ndarray, gen: np.ndarray, bins: np.ndarray | None, log_x: bool = False,
        gen_rows: slice | np.ndarray = all_generated,
    ) -> None:  # fmt: skip
        if bins is None:
            return
        rc, ro = histogram_counts(ref, bins)
        if generated_weights is None:
            gc, go = histogram_counts(gen, bins)
            pairs.append(HistogramPair(key, label, bins, rc, gc, ro, go, log_x))
        else:
            gc, gw2, go = weighted_counts(gen, bins, generated_weights[gen_rows])
            pairs.append(HistogramPair(key, label, bins, rc, gc, ro, go, log_x, generated_sumw2=gw2))

    ratio_ref = reference.e_tot / reference.incident_energy
    ratio_gen = generated.e_tot / generated.incident_energy
    add("E_tot/E_inc", "E_tot / E_inc", ratio_ref, ratio_gen, np.linspace(0.5, 1.5, 101))
    alpha_ids = [layer.layer_id for i, layer in enumerate(geometry.layers) if geometry.layer_has_alpha_bins(i)]
    for i, layer in enumerate(geometry.layers):
        lid = layer.layer_id
        add(
            f"E_layer/{lid}", f"E layer {lid} [MeV]", reference.e_layer[:, i], generated.e_layer[:, i],
            _log_bins(min_energy, float(reference.e_layer[:, i].max(initial=0.0)), 40), log_x=True,
        )  # fmt: skip
        l_ec_r, l_w_r = _range_for(geometry, lid, "ec_r"), _range_for(geometry, lid, "width_r")
        add(
            f"EC_r/{lid}",
            f"EC r layer {lid} [mm]",
            reference.ec_r[:, i],
            generated.ec_r[:, i],
            np.linspace(0, l_ec_r, 101),
        )
        add(
            f"width_r/{lid}",
            f"width r layer {lid} [mm]",
            reference.width_r[:, i],
            generated.width_r[:, i],
            np.linspace(0, l_w_r, 101),
        )
        add(
            f"sparsity/{lid}",
            f"sparsity layer {lid}",
            reference.sparsity[:, i],
            generated.sparsity[:, i],
            np.linspace(0, 1, 21),
        )
    for j, lid in enumerate(alpha_ids):
        l_ec, l_w = _range_for(geometry, lid, "ec"), _range_for(geometry, lid, "width")
        ec_bins, w_bins = np.linspace(-l_ec, l_ec, 101), np.linspace(0, l_w, 101)
        add(f"EC_eta/{lid}", f"EC eta layer {lid} [mm]", reference.ec_eta[:, j], generated.ec_eta[:, j], ec_bins)
        add(f"EC_phi/{lid}", f"EC phi layer {lid} [mm]", reference.ec_phi[:, j], generated.ec_phi[:, j], ec_bins)
        add(
            f"width_eta/{lid}",
            f"width eta layer {lid} [mm]",
            reference.width_eta[:, j],
            generated.width_eta[:, j],
            w_bins,
        )
        add(
            f"width_phi/{lid}",
            f"width phi layer {lid} [mm]",
            reference.width_phi[:, j],
            generated.width_phi[:, j],
            w_bins,
        )
    if not _is_ds1(geometry):  # a continuous spectrum: E_tot/E_inc in a few bins of incident energy
        edges = incident_energy_bins(reference.incident_energy, ENERGY_RATIO_BINS)
        for lo, hi in itertools.pairwise(edges):
            ref_sel = (reference.incident_energy >= lo) & (reference.incident_energy < hi)
            gen_sel = (generated.incident_energy >= lo) & (generated.incident_energy < hi)
            name = f"{_energy_text(lo)}-{_energy_text(hi)}"
            add(f"E_tot/E_inc@{name}", f"E_tot / E_inc, E_inc {name}", ratio_ref[ref_sel], ratio_gen[gen_sel],
                np.linspace(0.5, 1.5, 51), gen_rows=gen_sel)  # fmt: skip
    if _is_ds1(geometry):
        for energy in np.unique(reference.incident_energy):
            ref_sel = reference.incident_energy == energy
            gen_sel = generated.incident_energy == energy
            if gen_sel.any():
                add(
                    f"E_tot/E_inc@{energy:g}MeV", f"E_tot / E_inc at {energy:g} MeV",
                    ratio_ref[ref_sel], ratio_gen[gen_sel], ds1_energy_ratio_bins(geometry, float(energy)),
                    gen_rows=gen_sel,
                )  # fmt: skip
    return pairs


def voxel_energy_bins(min_energy: float, max_reference_voxel: float) -> np.ndarray | None:
    """Bins of the pooled voxel-energy histogram: logspace(log10 min_energy, log10 max reference voxel, 50)."""
    return _log_bins(min_energy, max_reference_voxel, 50)
