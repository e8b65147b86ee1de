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


def merge_close_labels(
    rows: Sequence[dict], dx_decades: float = 0.12, dy: float = 0.015
) -> list[tuple[float, float, str]]:
    """One label per cluster of nearby points, so that labels do not print over each other.

    Points within ``dx_decades`` (log10 of time) and ``dy`` (quality) of an already labelled point
    join its label; labels with the same first word merge their tails (``vae fp32/bf16``).

    Returns:
        ``(ms_per_shower, quality, text)`` per label.
    """
    clusters: list[list[dict]] = []
    for r in rows:
        for cluster in clusters:
            head = cluster[0]
            if (abs(np.log10(r["ms_per_shower"]) - np.log10(head["ms_per_shower"])) < dx_decades
                    and abs(r["quality"] - head["quality"]) < dy):  # fmt: skip
                cluster.append(r)
                break
        else:
            clusters.append([r])
    labels = []
    for cluster in clusters:
        texts: dict[str, list[str]] = {}
        for r in cluster:
            first, _, rest = r["label"].partition(" ")
            texts.setdefault(first, []).append(rest)
        text = ", ".join(f"{first} {'/'.join(t for t in tails if t)}".strip() for first, tails in texts.items())
        labels.append((cluster[0]["ms_per_shower"], cluster[0]["quality"], text))
    return labels


def figure_pareto(ours: Sequence[dict], published: Sequence[dict], quality_label: str = "AUC (high-level)") -> Figure:
    """Quality (y) against time per shower (x, log), ours and published rows, with our Pareto front.

    Each row: ``{"label", "ms_per_shower", "quality"}``, optionally ``"series"``: our rows of one
    series (one model at several step counts) are joined by a line. Lower is better on both axes.
    """
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    if published:
        ax.scatter([r["ms_per_shower"] for r in published], [r["quality"] for r in published], marker="s",
                   color="0.6", label="published (Geant4 data)")  # fmt: skip
        for x, y, text in merge_close_labels(published):
            ax.annotate(text, (x, y), fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset points")
    if ours:
        ax.scatter([r["ms_per_shower"] for r in ours], [r["quality"] for r in ours], marker="o", color="C3",
                   label="calosurrogate (fast-engine data; \"(geant4)\": geant4-engine data)")  # fmt: skip
        series: dict[str, list[dict]] = {}
        for r in ours:
            if r.get("series"):
                series.setdefault(r["series"], []).append(r)
        for rows in series.values():
            rows = sorted(rows, key=lambda r: r["ms_per_shower"])
            ax.plot([r["ms_per_shower"] for r in rows], [r["quality"] for r in rows], color="C3", lw=0.8, alpha=0.6)
        for x, y, text in merge_close_labels(ours):
            ax.annotate(text, (x, y), fontsize=7, color="C3", xytext=(3, -9), textcoords="offset points")
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


__all__ = ["figure_pareto", "figure_timing", "merge_close_labels"]
