"""Figures of speed benchmarks: time per shower against batch size, and quality against speed."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def figure_timing(rows: Sequence[dict]) -> Figure:
    """Median time per shower (ms) against batch size, one line per (device, precision, compiled),
    with the 16-84% spread of the repeats as error bars. ``rows``: ``TimingResult.as_dict()`` entries."""
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        label = f"{row['device']} {row['precision']}" + (" compiled" if row.get("compiled") else "")
        groups.setdefault(label, []).append(row)
    for label, group in groups.items():
        group = sorted(group, key=lambda r: r["batch_size"])
        x = np.array([r["batch_size"] for r in group])
        y = np.array([r["ms_per_shower"] for r in group])
        low = y - np.array([r["ms_per_shower_low"] for r in group])
        high = np.array([r["ms_per_shower_high"] for r in group]) - y
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size [showers]")
    ax.set_ylabel("time per shower [ms]")
    family = rows[0]["family"] if rows else ""
    ax.set_title(f"sampling time per shower ({family}, {rows[0]['threads'] if rows else '?'} threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def figure_pareto(ours: Sequence[dict], published: Sequence[dict], quality_label: str = "AUC (high-level)") -> Figure:
    """Quality (y) against time per shower (x, log), ours and published rows, with our Pareto front.

    Each row: ``{"label", "ms_per_shower", "quality"}``; lower is better on both axes.
    """
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    if published:
        ax.scatter([r["ms_per_shower"] for r in published], [r["quality"] for r in published], marker="s",
                   color="0.6", label="published (Geant4 data)")  # fmt: skip
        for r in published:
            ax.annotate(r["label"], (r["ms_per_shower"], r["quality"]), fontsize=7, color="0.4",
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    if ours:
        ax.scatter([r["ms_per_shower"] for r in ours], [r["quality"] for r in ours], marker="o", color="C3",
                   label="calosurrogate (built-in simulator data)")  # fmt: skip
        for r in ours:
            ax.annotate(r["label"], (r["ms_per_shower"], r["quality"]), fontsize=7, color="C3",
                        xytext=(3, -9), textcoords="offset points")  # fmt: skip
        front, best = [], np.inf
        for r in sorted(ours, key=lambda r: r["ms_per_shower"]):
            if r["quality"] < best:
                best = r["quality"]
                front.append(r)
        ax.step([r["ms_per_shower"] for r in front], [r["quality"] for r in front], where="post", color="C3", alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("time per shower [ms], batch 10,000")
    ax.set_ylabel(f"{quality_label} (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


__all__ = ["figure_pareto", "figure_timing"]
