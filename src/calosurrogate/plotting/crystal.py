"""Figures of a crystal-calorimeter evaluation (ParaFlow's set-up): shower-shape histograms with
ratio panels, the mean of each shape over the grid of the plate's thickness and distance with its
relative difference, the average image, and the separation power per slice beside its floor."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from calosurrogate.metrics.separation import HistogramPair
from calosurrogate.plotting.figures import GENERATED_COLOUR, REFERENCE_COLOUR, draw_histogram_pair

SHAPE_LABELS = {"brightest": "brightest crystal [MeV]", "second_brightest": "second-brightest crystal [MeV]",
                "width": "width w [crystals]", "r9": "R9", "n_clusters": "clusters (DBSCAN)"}  # fmt: skip
CONDITION_LABELS = {"plate_thickness": "plate thickness d [X0]", "plate_distance": "plate distance b [cm]"}


def figure_shape_histograms(result: dict[str, Any]) -> Figure:
    """Every shape's distribution, reference against generated, each with a ratio panel and its
    inclusive separation power."""
    histograms, separation = result["histograms"], result["separation"]["all"]
    fig = plt.figure(figsize=(3.4 * len(histograms), 3.8))
    grid = fig.add_gridspec(1, len(histograms), wspace=0.35)
    for cell, (name, h) in zip(grid, histograms.items(), strict=True):
        inner = cell.subgridspec(2, 1, height_ratios=[3, 1.2], hspace=0.06)
        ax = fig.add_subplot(inner[0])
        ax_ratio = fig.add_subplot(inner[1], sharex=ax)
        pair = HistogramPair(name, SHAPE_LABELS.get(name, name), np.asarray(h["bins"]), np.asarray(h["reference"]),
                             np.asarray(h["generated"]), h["reference_outside"], h["generated_outside"])  # fmt: skip
        draw_histogram_pair(pair, ax, ax_ratio, separation[name]["value"])
    fig.axes[0].legend(loc="best", fontsize=8, frameon=False)
    return fig


def figure_shape_grids(result: dict[str, Any]) -> Figure:
    """Per shape: its relative difference (generated / reference - 1) in each cell of the (d, b)
    grid, the numbers written in the cells, the colour scale symmetric around zero."""
    grids, edges = result["mean_shape_grid"], result["grid_edges"]
    (first, first_edges), (second, second_edges) = edges.items()
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.0), constrained_layout=True)
    for ax, (name, g) in zip(np.atleast_1d(axes), grids.items(), strict=True):
        rel = np.asarray(g["relative_difference"], dtype=float)
        scale = max(0.02, float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else 0.02)
        mesh = ax.pcolormesh(second_edges, first_edges, rel, cmap="RdBu_r", vmin=-scale, vmax=scale)
        for i in range(rel.shape[0]):
            for j in range(rel.shape[1]):
                if np.isfinite(rel[i, j]):
                    x = 0.5 * (second_edges[j] + second_edges[j + 1])
                    y = 0.5 * (first_edges[i] + first_edges[i + 1])
                    ax.text(x, y, f"{100 * rel[i, j]:+.1f}%", ha="center", va="center", fontsize=7)
        ax.set_title(
            f"{SHAPE_LABELS.get(name, name)}\nlargest {g['largest_relative_difference']:.1%} (floor {g['floor']:.1%})"
        )
        ax.set_xlabel(CONDITION_LABELS.get(second, second))
        ax.set_ylabel(CONDITION_LABELS.get(first, first))
        fig.colorbar(mesh, ax=ax, fraction=0.05, label="gen / ref - 1")
    return fig


def figure_average_image(result: dict[str, Any]) -> Figure:
    """The average crystal image of each sample (MeV, logarithmic colours) and their relative
    difference, the central 4 x 4 crystals outlined."""
    image = result["average_image"]
    ref, gen = np.asarray(image["reference"]), np.asarray(image["generated"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ref > 0, gen / ref - 1, np.nan)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.0), constrained_layout=True)
    low = max(float(ref[ref > 0].min()) if (ref > 0).any() else 1e-3, 1e-3)
    norm = plt.matplotlib.colors.LogNorm(vmin=low, vmax=max(float(ref.max()), low * 10))
    for ax, data, title in ((axes[0], ref, "reference"), (axes[1], gen, "generated")):
        mesh = ax.imshow(np.clip(data, low, None), origin="lower", norm=norm, cmap="viridis", aspect="equal")
        ax.set_title(f"average image, {title}")
        fig.colorbar(mesh, ax=ax, fraction=0.03, label="MeV")
    scale = max(0.02, float(np.nanmax(np.abs(rel))) if np.isfinite(rel).any() else 0.02)
    mesh = axes[2].imshow(rel, origin="lower", cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="equal")
    axes[2].set_title(f"gen / ref - 1; central 4 x 4 within {image['central_4x4_largest_relative_difference']:.1%} "
                      f"(floor {image['central_4x4_floor']:.1%})", fontsize=8)  # fmt: skip
    fig.colorbar(mesh, ax=axes[2], fraction=0.03)
    nx, ny = ref.shape
    x0, y0 = (nx - 4) // 2, (ny - 4) // 2
    for ax in axes:
        ax.add_patch(
            plt.Rectangle((y0 - 0.5, x0 - 0.5), 4, 4, fill=False, edgecolor="white" if ax is not axes[2] else "black")
        )
        ax.set_xlabel("crystal y (field bends along y)")
        ax.set_ylabel("crystal x")
    return fig


def figure_sliced_separation(result: dict[str, Any]) -> Figure:
    """Separation power of every shape inclusively and per slice of d and of b (points, with
    errors), each beside its floor (grey): where a surrogate stands out from sampling noise."""
    separation = result["separation"]
    slices = list(separation)
    shapes = list(separation["all"])
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.0 * len(shapes), 3.4), sharey=True, constrained_layout=True)
    y = np.arange(len(slices))
    for ax, name in zip(np.atleast_1d(axes), shapes, strict=True):
        values = np.array([separation[s][name]["value"] for s in slices])
        errors = np.array([separation[s][name]["error"] for s in slices])
        floors = np.array(
            [np.nan if separation[s][name]["floor"] is None else separation[s][name]["floor"] for s in slices]
        )
        ax.barh(y, floors, color=REFERENCE_COLOUR, alpha=0.6, label="floor")
        ax.errorbar(values, y, xerr=errors, fmt="o", color=GENERATED_COLOUR, markersize=3, label="generated")
        ax.set_xscale("log")
        ax.set_title(SHAPE_LABELS.get(name, name), fontsize=8)
        ax.set_xlabel("separation power")
    np.atleast_1d(axes)[0].set_yticks(y, slices, fontsize=7)
    np.atleast_1d(axes)[0].legend(fontsize=7, frameon=False, loc="lower right")
    return fig


__all__ = ["figure_average_image", "figure_shape_grids", "figure_shape_histograms", "figure_sliced_separation"]
