"""Matplotlib figures (Agg backend; no LaTeX needed).

Style follows the CaloChallenge plots: the reference as a filled grey histogram, the
generated sample as a coloured line, a ratio panel (generated / reference) with the
reference's statistical band, and the separation power written on each panel.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.collections
import matplotlib.colors
import matplotlib.gridspec
import matplotlib.pyplot as plt
import matplotlib.ticker
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


# Radial observables of a geometry with few radial bins take nearly discrete values: on the
# separation power's 100 bins their histograms are combs. They are drawn in bins this many
# times wider (the separation power written on the panel stays the one of the official bins).
COARSER_DISPLAY = {"EC_r": 4, "width_r": 4}


def _for_display(pair: HistogramPair) -> HistogramPair:
    factor = COARSER_DISPLAY.get(pair.key.split("/")[0], 1)
    n_bins = len(pair.bins) - 1
    if factor == 1 or n_bins % factor:
        return pair
    merge = lambda counts: np.asarray(counts).reshape(-1, factor).sum(axis=1)  # noqa: E731
    return HistogramPair(pair.key, pair.label, pair.bins[::factor], merge(pair.reference), merge(pair.generated),
                         pair.reference_outside, pair.generated_outside, pair.log_x)  # fmt: skip


def _outside_note(pair: HistogramPair) -> str | None:
    """How many entries of each sample fall outside the range drawn (and the separation power's)."""
    if not (pair.reference_outside or pair.generated_outside):
        return None
    parts = []
    for name, outside, inside in (("ref", pair.reference_outside, pair.reference.sum()),
                                  ("gen", pair.generated_outside, pair.generated.sum())):  # fmt: skip
        parts.append(f"{name} {outside:,} ({outside / max(outside + inside, 1):.1%})")
    return "outside range: " + ", ".join(parts)


def draw_histogram_pair(pair: HistogramPair, ax: plt.Axes, ax_ratio: plt.Axes | None, separation: float | None,
                        statistic: str = "S") -> None:  # fmt: skip
    """Draw one observable on ``ax`` (densities) and its ratio on ``ax_ratio``, with the number of
    entries of each sample outside the range written under the axis; ``separation`` is written
    as ``statistic = value`` (S: separation power; JSD: Jensen-Shannon distance)."""
    pair = _for_display(pair)
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
        ax.text(0.97, 0.93, f"{statistic} = {separation:.4f}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    note = _outside_note(pair)
    label = pair.label + (f"\n{note}" if note else "")  # under the axis: it never covers the data or the legend
    ax.set_ylabel("density")
    if ax_ratio is None:
        ax.set_xlabel(label)
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
    ax_ratio.set_xlabel(label)
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
    pairs: Sequence[HistogramPair], separations: Sequence[float | None], title: str, columns: int = 3,
    statistic: str = "S",
) -> Figure:  # fmt: skip
    """Several layers (or observables) side by side, each with its ratio panel right below it."""
    rows = -(-len(pairs) // columns)
    fig = plt.figure(figsize=(3.6 * columns, 3.0 * rows + 0.4))
    outer = fig.add_gridspec(rows, columns, hspace=0.42, wspace=0.35, top=1 - 0.45 / (3.0 * rows + 0.4))
    for k, (pair, s) in enumerate(zip(pairs, separations, strict=True)):
        ax, ax_ratio = _with_ratio(fig, outer[divmod(k, columns)])
        draw_histogram_pair(pair, ax, ax_ratio, s, statistic)
        # small panels: the minor ticks of log axes add nothing readable and cost half the drawing time
        ax.minorticks_off()
        ax_ratio.minorticks_off()
        if k == 0:
            ax.legend(loc="best", fontsize=7, frameon=False)
    fig.suptitle(title)
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
    ax: plt.Axes, geometry: CylindricalGeometry, index: int, values: np.ndarray, norm: matplotlib.colors.Normalize,
    cmap: str = "viridis",
) -> matplotlib.collections.QuadMesh:  # fmt: skip
    layer = geometry.layers[index]
    alpha_edges = np.linspace(-np.pi, np.pi, layer.n_alpha + 1)
    image = values.reshape(layer.n_alpha, layer.n_r)
    r_edges = np.asarray(layer.r_edges)
    shown = np.clip(image.T, norm.vmin, None) if isinstance(norm, matplotlib.colors.LogNorm) else image.T
    mesh = ax.pcolormesh(alpha_edges, r_edges, shown, norm=norm, cmap=cmap, shading="flat")
    ax.set_xticks([])
    ax.set_yticks([])
    return mesh


def figure_mean_showers(
    geometry: CylindricalGeometry, reference: np.ndarray, generated: np.ndarray, max_layers: int = 6
) -> Figure:
    """Mean shower image per layer (polar, log colour, one colour bar per layer), reference above
    generated, and below them the relative difference (generated - reference) / reference."""
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
        3, len(chosen), figsize=(2.5 * len(chosen), 7.4), subplot_kw={"projection": "polar"}, squeeze=False,
        gridspec_kw={"hspace": 0.35, "wspace": 0.45},
    )  # fmt: skip
    difference_norm = matplotlib.colors.Normalize(vmin=-0.5, vmax=0.5)
    for col, i in enumerate(chosen):
        sl = geometry.layer_slice(i)
        both = np.concatenate([reference[sl], generated[sl]])
        vmax = max(both.max(), 1e-6)
        vmin = max(vmax * 1e-4, both[both > 0].min() if (both > 0).any() else vmax * 1e-4)
        norm = matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax)
        for row, values in enumerate((reference[sl], generated[sl])):
            mesh = _polar_image(axes[row, col], geometry, i, values, norm)
        bar = fig.colorbar(mesh, ax=axes[:2, col], orientation="horizontal", fraction=0.05, pad=0.04, label="MeV")
        # a narrow log range gets labelled minor ticks, which collide; decades (or the two ends) only
        bar.minorformatter = matplotlib.ticker.NullFormatter()
        if np.log10(vmax / vmin) < 1.5:
            bar.set_ticks([vmin, vmax], labels=[f"{vmin:.2g}", f"{vmax:.2g}"])
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(reference[sl] > 0, (generated[sl] - reference[sl]) / reference[sl], np.nan)
        difference = _polar_image(axes[2, col], geometry, i, relative, difference_norm, cmap="RdBu_r")
        axes[0, col].set_title(f"layer {geometry.layers[i].layer_id}")
    fig.colorbar(difference, ax=axes[2, :], orientation="horizontal", fraction=0.05, pad=0.06,
                 label="(generated - reference) / reference, clipped to +-50%", extend="both")  # fmt: skip
    for row, name in enumerate(("reference", "generated", "relative difference")):
        axes[row, 0].set_ylabel(name, labelpad=22)
    fig.suptitle("Mean shower per layer (MeV per voxel, log colour scale)")
    return fig


def _ratio_points(
    ax: plt.Axes, x: np.ndarray, ref: np.ndarray, ref_err: np.ndarray, gen: np.ndarray, gen_err: np.ndarray
) -> None:
    """generated / reference with its error, over the reference's relative error as a grey band."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = gen / ref
        band = ref_err / np.abs(ref)
        ratio_err = gen_err / np.abs(ref)
    ax.fill_between(x, 1 - band, 1 + band, color=REFERENCE_COLOUR, alpha=0.5, step="mid", linewidth=0)
    ax.errorbar(x, ratio, yerr=ratio_err, fmt="o", markersize=2.5, color=GENERATED_COLOUR, elinewidth=0.8)
    ax.axhline(1.0, color="black", linewidth=0.6)
    finite = np.isfinite(ratio)
    if finite.any():
        low, high = np.nanmin(ratio - np.nan_to_num(ratio_err)), np.nanmax(ratio + np.nan_to_num(ratio_err))
        ax.set_ylim(max(0.0, min(0.9, low - 0.02)), max(1.1, high + 0.02))
    ax.set_ylabel("gen / ref")


def _with_ratio(fig: Figure, cell: matplotlib.gridspec.SubplotSpec) -> tuple[plt.Axes, plt.Axes]:
    inner = cell.subgridspec(2, 1, height_ratios=[3, 1.3], hspace=0.06)
    ax = fig.add_subplot(inner[0])
    ax_ratio = fig.add_subplot(inner[1], sharex=ax)
    ax.tick_params(labelbottom=False)
    return ax, ax_ratio


def figure_response(response: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Response (mean E_tot / E_inc) and resolution (its std / mean) against the incident energy,
    each with a ratio panel; error bars are statistical.

    Args:
        response: ``{"reference": ..., "generated": ...}``, each the output of
            :func:`calosurrogate.metrics.response.response_resolution`.
    """
    fig = plt.figure(figsize=(9.5, 4.2))
    outer = fig.add_gridspec(1, 2, wspace=0.3)
    ref, gen = response["reference"], response["generated"]
    x = np.asarray(ref["centre"]) / 1e3
    for cell, (key, label) in zip(outer, (("response", "response: mean E_tot / E_inc"),
                                           ("resolution", "resolution: std / mean of E_tot / E_inc")), strict=True):  # fmt: skip
        ax, ax_ratio = _with_ratio(fig, cell)
        ax.errorbar(x, ref[key], yerr=ref[f"{key}_error"], fmt="s", markersize=5, color=REFERENCE_COLOUR,
                    label="reference", elinewidth=2)  # fmt: skip
        ax.errorbar(x, gen[key], yerr=gen[f"{key}_error"], fmt="o", markersize=3, color=GENERATED_COLOUR,
                    label="generated", elinewidth=1)  # fmt: skip
        ax.set_xscale("log")
        ax.set_ylabel(label)
        ax.legend(loc="best", fontsize=8, frameon=False)
        _ratio_points(ax_ratio, x, np.asarray(ref[key]), np.asarray(ref[f"{key}_error"]), np.asarray(gen[key]),
                      np.asarray(gen[f"{key}_error"]))  # fmt: skip
        ax_ratio.set_xlabel("incident energy [GeV]")
    return fig


def figure_profiles(
    geometry: CylindricalGeometry,
    layer_ref: np.ndarray,
    layer_gen: np.ndarray,
    mean_ref: np.ndarray,
    mean_gen: np.ndarray,
    layer_ref_err: np.ndarray | None = None,
    layer_gen_err: np.ndarray | None = None,
    radial: dict[str, dict[str, np.ndarray]] | None = None,
) -> Figure:
    """Mean longitudinal profile (energy per layer) and mean radial profile (energy density), each
    with a ratio panel and the standard errors of the means where they are given.

    Args:
        layer_ref, layer_gen: ``(L,)`` mean energy per layer in MeV (``*_err``: their standard errors).
        mean_ref, mean_gen: ``(n_voxels,)`` mean showers in MeV.
        radial: ``{"reference": {"mean", "error"}, "generated": ...}``, the radial energy density
            in MeV / mm^2 per r bin; computed from the mean showers (without errors) when absent.
    """
    fig = plt.figure(figsize=(9.5, 4.2))
    outer = fig.add_gridspec(1, 2, wspace=0.3)
    ax_l, ratio_l = _with_ratio(fig, outer[0])
    ids = np.arange(geometry.n_layers)
    zeros = np.zeros(geometry.n_layers)
    ref_err = zeros if layer_ref_err is None else layer_ref_err
    gen_err = zeros if layer_gen_err is None else layer_gen_err
    ax_l.step(ids, layer_ref, where="mid", color=REFERENCE_COLOUR, linewidth=2.5, label="reference")
    ax_l.step(ids, layer_gen, where="mid", color=GENERATED_COLOUR, label="generated")
    ax_l.errorbar(ids, layer_gen, yerr=gen_err, fmt="none", ecolor=GENERATED_COLOUR, elinewidth=0.7)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("mean energy [MeV]")
    ax_l.legend(loc="best", frameon=False, fontsize=8)
    _ratio_points(ratio_l, ids, layer_ref, ref_err, layer_gen, gen_err)
    step = max(1, len(ids) // 10)
    ratio_l.set_xticks(ids[::step], [geometry.layers[i].layer_id for i in ids[::step]])
    ratio_l.set_xlabel("layer")
    if geometry.is_regular:
        ax_r, ratio_r = _with_ratio(fig, outer[1])
        r_mid = np.asarray(geometry.layers[0].r_mid)
        if radial is None:
            areas = geometry.voxel_areas
            radial = {name: {"mean": (values / areas).reshape(geometry.shape).sum(axis=0).mean(axis=0),
                             "error": np.zeros(len(r_mid))}
                      for name, values in (("reference", mean_ref), ("generated", mean_gen))}  # fmt: skip
        ref_r, gen_r = radial["reference"], radial["generated"]
        ax_r.step(r_mid, ref_r["mean"], where="mid", color=REFERENCE_COLOUR, linewidth=2.5)
        ax_r.step(r_mid, gen_r["mean"], where="mid", color=GENERATED_COLOUR, linewidth=1.2)
        ax_r.errorbar(r_mid, gen_r["mean"], yerr=gen_r["error"], fmt="none", ecolor=GENERATED_COLOUR, elinewidth=0.7)
        ax_r.set_yscale("log")
        ax_r.set_ylabel("energy density, summed over layers\n[MeV / mm$^2$]")
        _ratio_points(ratio_r, r_mid, ref_r["mean"], ref_r["error"], gen_r["mean"], gen_r["error"])
        ratio_r.set_xlabel("r [mm]")
    else:
        ax_r = fig.add_subplot(outer[1])
        ax_r.axis("off")
        ax_r.text(0.5, 0.5, "radial profile: see the EC_r and width_r histograms\n(layers differ in binning)",
                  ha="center", va="center")  # fmt: skip
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
