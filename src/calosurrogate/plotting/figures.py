"""Matplotlib figures (Agg backend; no LaTeX needed).

Style follows the CaloChallenge plots: the reference as a filled grey histogram, the
generated sample as a coloured line, a ratio panel (generated / reference) with the
reference's statistical band, and the separation power written on each panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.metrics.separation import HistogramPair

REFERENCE_COLOUR = "#9a9a9a"
GENERATED_COLOUR = "#d1495b"
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "figure.dpi": 100, "savefig.bbox": "tight"})


def _fractions(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def draw_histogram_pair(pair: HistogramPair, ax: plt.Axes, ax_ratio: plt.Axes | None, separation: float | None) -> None:
    """Draw one observable on ``ax`` (densities) and its ratio on ``ax_ratio``."""
    widths = np.diff(pair.bins)
    ref = _fractions(pair.reference) / widths
    gen = _fractions(pair.generated) / widths
    ref_err = np.sqrt(pair.reference) / max(pair.reference.sum(), 1) / widths
    ax.stairs(ref, pair.bins, fill=True, color=REFERENCE_COLOUR, alpha=0.6, label="reference")
    ax.stairs(gen, pair.bins, color=GENERATED_COLOUR, linewidth=1.3, label="generated")
    if pair.log_x:
        ax.set_xscale("log")
    if ref.max(initial=0) > 0 and ref[ref > 0].min() < ref.max() / 200:
        ax.set_yscale("log")
    if separation is not None:
        ax.text(0.97, 0.93, f"S = {separation:.4f}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_ylabel("density")
    if ax_ratio is None:
        ax.set_xlabel(pair.label)
        return
    ax.tick_params(labelbottom=False)
    gen_err = np.sqrt(pair.generated) / max(pair.generated.sum(), 1) / widths
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref > 0, gen / ref, np.nan)
        band = np.where(ref > 0, ref_err / ref, np.nan)
        ratio_err = np.where(ref > 0, gen_err / ref, np.nan)
    ax_ratio.stairs(1 + band, pair.bins, baseline=1 - band, fill=True, color=REFERENCE_COLOUR, alpha=0.5)
    ax_ratio.stairs(ratio, pair.bins, color=GENERATED_COLOUR, linewidth=1.0)
    centres = np.sqrt(pair.bins[:-1] * pair.bins[1:]) if pair.log_x else 0.5 * (pair.bins[:-1] + pair.bins[1:])
    ax_ratio.errorbar(centres, ratio, yerr=ratio_err, fmt="none", ecolor=GENERATED_COLOUR, elinewidth=0.7, alpha=0.8)
    ax_ratio.axhline(1.0, color="black", linewidth=0.6)
    ax_ratio.set_ylim(*ratio_limits(ratio, pair.reference))
    ax_ratio.set_ylabel("gen / ref")
    ax_ratio.set_xlabel(pair.label)
    if pair.log_x:
        ax_ratio.set_xscale("log")


def ratio_limits(ratio: np.ndarray, reference_counts: np.ndarray, min_counts: int = 10) -> tuple[float, float]:
    """Ratio-panel limits that hold every ratio of a bin with at least ``min_counts`` reference
    entries (at least 0.5-1.5; at most 0-10): a curve never leaves the frame where the reference
    is well measured, and its sparse tails do not squash the rest."""
    well = np.isfinite(ratio) & (np.asarray(reference_counts) >= min_counts)
    if not well.any():
        return 0.5, 1.5
    low, high = float(ratio[well].min()), float(ratio[well].max())
    return max(0.0, min(0.5, 0.9 * low)), min(10.0, max(1.5, 1.1 * high))


def figure_histogram(pair: HistogramPair, separation: float | None = None) -> Figure:
    """One observable with its ratio panel."""
    fig, (ax, ax_ratio) = plt.subplots(
        2, 1, figsize=(4.8, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
    )
    draw_histogram_pair(pair, ax, ax_ratio, separation)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def figure_layer_grid(
    pairs: Sequence[HistogramPair], separations: Sequence[float | None], title: str, columns: int = 3
) -> Figure:
    """Several layers of one observable, each with its ratio panel."""
    rows = -(-len(pairs) // columns)
    fig = plt.figure(figsize=(3.6 * columns, 3.1 * rows))
    grid = fig.add_gridspec(rows * 2, columns, height_ratios=[3, 1.2] * rows, hspace=0.75, wspace=0.35)
    for k, (pair, s) in enumerate(zip(pairs, separations, strict=True)):
        r, c = divmod(k, columns)
        ax = fig.add_subplot(grid[2 * r, c])
        ax_ratio = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        draw_histogram_pair(pair, ax, ax_ratio, s)
        if k == 0:
            ax.legend(loc="best", fontsize=7, frameon=False)
    fig.suptitle(title, y=0.99 - 0.02 / max(rows, 1))
    return fig


def figure_separation_overview(separation: dict[str, dict], geometry: CylindricalGeometry) -> Figure:
    """Separation power of every per-layer observable against the layer, floors dashed."""
    kinds = ["E_layer", "EC_eta", "EC_phi", "width_eta", "width_phi", "EC_r", "width_r", "sparsity"]
    fig, ax = plt.subplots(figsize=(8.5, 3.8))
    colours = plt.cm.tab10(np.linspace(0, 1, 10))
    for colour, kind in zip(colours, kinds, strict=False):
        points = [
            (lay.layer_id, separation[f"{kind}/{lay.layer_id}"])
            for lay in geometry.layers
            if f"{kind}/{lay.layer_id}" in separation
        ]
        if not points:
            continue
        ids = [p[0] for p in points]
        ax.plot(ids, [max(p[1]["value"], 1e-6) for p in points], "o-", markersize=2.5, color=colour, label=kind)
        if "floor" in points[0][1]:
            ax.plot(ids, [max(p[1]["floor"], 1e-6) for p in points], "--", linewidth=0.8, color=colour, alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("separation power S")
    ax.set_title("Separation power per layer (solid: generated vs reference; dashed: reference half vs half)")
    ax.legend(ncol=4, fontsize=7, frameon=False)
    return fig


def _polar_image(
    ax: plt.Axes, geometry: CylindricalGeometry, index: int, values: np.ndarray, vmin: float, vmax: float
) -> None:
    layer = geometry.layers[index]
    alpha_edges = np.linspace(-np.pi, np.pi, layer.n_alpha + 1)
    image = values.reshape(layer.n_alpha, layer.n_r)
    r_edges = np.asarray(layer.r_edges)
    norm = matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax)
    ax.pcolormesh(alpha_edges, r_edges, np.clip(image.T, vmin, None), norm=norm, cmap="viridis", shading="flat")
    ax.set_xticks([])
    ax.set_yticks([])


def figure_mean_showers(
    geometry: CylindricalGeometry, reference: np.ndarray, generated: np.ndarray, max_layers: int = 6
) -> Figure:
    """Mean shower image per layer (polar, log colour), reference above generated."""
    layer_energy = np.array([reference[geometry.layer_slice(i)].sum() for i in range(geometry.n_layers)])
    # Layers spread over the depth that holds 99% of the energy, so the images show the shower's evolution.
    fraction = np.cumsum(layer_energy) / max(layer_energy.sum(), 1e-300)
    first, last = int(np.searchsorted(fraction, 0.005)), int(np.searchsorted(fraction, 0.995))
    chosen = sorted(
        set(
            np.linspace(first, min(last, geometry.n_layers - 1), min(max_layers, geometry.n_layers))
            .round()
            .astype(int)
            .tolist()
        )
    )
    fig, axes = plt.subplots(
        2, len(chosen), figsize=(2.2 * len(chosen), 4.6), subplot_kw={"projection": "polar"}, squeeze=False
    )
    for col, i in enumerate(chosen):
        sl = geometry.layer_slice(i)
        both = np.concatenate([reference[sl], generated[sl]])
        vmax = max(both.max(), 1e-6)
        vmin = max(vmax * 1e-4, both[both > 0].min() if (both > 0).any() else vmax * 1e-4)
        for row, values in enumerate((reference[sl], generated[sl])):
            _polar_image(axes[row, col], geometry, i, values, vmin, vmax)
        axes[0, col].set_title(f"layer {geometry.layers[i].layer_id}")
    axes[0, 0].set_ylabel("reference", labelpad=18)
    axes[1, 0].set_ylabel("generated", labelpad=18)
    fig.suptitle("Mean shower per layer (MeV per voxel, log colour scale)")
    return fig


def figure_profiles(
    geometry: CylindricalGeometry,
    layer_ref: np.ndarray,
    layer_gen: np.ndarray,
    mean_ref: np.ndarray,
    mean_gen: np.ndarray,
) -> Figure:
    """Mean longitudinal profile (energy per layer) and mean radial profile (energy density)."""
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(9, 3.4))
    ids = np.arange(geometry.n_layers)
    ax_l.step(ids, layer_ref, where="mid", color=REFERENCE_COLOUR, linewidth=2.5, label="reference")
    ax_l.step(ids, layer_gen, where="mid", color=GENERATED_COLOUR, label="generated")
    ax_l.set_yscale("log")
    ax_l.set_xticks(
        ids[:: max(1, len(ids) // 10)], [geometry.layers[i].layer_id for i in ids[:: max(1, len(ids) // 10)]]
    )
    ax_l.set_xlabel("layer")
    ax_l.set_ylabel("mean energy [MeV]")
    ax_l.legend(frameon=False)
    if geometry.is_regular:
        layer = geometry.layers[0]
        areas = geometry.voxel_areas
        for values, colour, width in ((mean_ref, REFERENCE_COLOUR, 2.5), (mean_gen, GENERATED_COLOUR, 1.2)):
            density = (values / areas).reshape(geometry.shape).sum(axis=0).mean(axis=0)
            ax_r.step(layer.r_mid, density, where="mid", color=colour, linewidth=width)
        ax_r.set_yscale("log")
        ax_r.set_xlabel("r [mm]")
        ax_r.set_ylabel("energy density summed over layers [MeV / mm$^2$]")
    else:
        ax_r.axis("off")
        ax_r.text(
            0.5,
            0.5,
            "radial profile: see the EC_r and width_r histograms\n(layers differ in binning)",
            ha="center",
            va="center",
        )
    return fig


def figure_layer_correlations(reference: np.ndarray, generated: np.ndarray) -> Figure:
    """Layer-energy correlation matrices side by side, and their difference."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.7))
    for ax, matrix, title in ((axes[0], reference, "reference"), (axes[1], generated, "generated")):
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, origin="lower")
        ax.set_title(f"layer-energy correlations: {title}")
        ax.set_xlabel("layer")
        ax.set_ylabel("layer")
    fig.colorbar(image, ax=axes[:2], fraction=0.025)
    diff = generated - reference
    limit = max(np.abs(diff).max(), 1e-3)
    image = axes[2].imshow(diff, cmap="PuOr", vmin=-limit, vmax=limit, origin="lower")
    axes[2].set_title("generated - reference")
    axes[2].set_xlabel("layer")
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    return fig


def figure_cfd_maps(maps: dict[str, dict[str, np.ndarray]]) -> Figure | None:
    """Where correlations differ: voxel variant (averaged over alpha) and group variant, gen - ref."""
    panels = []
    if "voxel" in maps and maps["voxel"]["reference"].ndim == 3:
        diff = (maps["voxel"]["generated"] - maps["voxel"]["reference"]).mean(axis=1)
        panels.append(("voxel variant: corr(layer l, l+1) difference, mean over alpha", diff, "layer l", "r bin"))
    if "group" in maps:
        diff = maps["group"]["generated"] - maps["group"]["reference"]
        panels.append(("group variant: corr(group g, g+1) difference", diff, "group g", "r bin"))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, diff, ylabel, xlabel) in zip(axes[0], panels, strict=True):
        limit = max(np.abs(diff).max(), 1e-3)
        image = ax.imshow(diff, cmap="PuOr", vmin=-limit, vmax=limit, origin="lower", aspect="auto")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        fig.colorbar(image, ax=ax, fraction=0.046)
    return fig
