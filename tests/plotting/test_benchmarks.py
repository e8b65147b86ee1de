"""Benchmark figures: label merging and the Pareto plot."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from calosurrogate.plotting import figure_pareto
from calosurrogate.plotting.benchmarks import merge_close_labels


def test_close_points_share_one_label_and_far_ones_keep_theirs() -> None:
    rows = [
        {"label": "vae fp32", "ms_per_shower": 0.031, "quality": 0.620},
        {"label": "vae bf16", "ms_per_shower": 0.032, "quality": 0.621},
        {"label": "flow fp32", "ms_per_shower": 0.9, "quality": 0.906},
        {"label": "wgan fp32", "ms_per_shower": 0.011, "quality": 0.999},
        {"label": "diffusion 2-step", "ms_per_shower": 0.012, "quality": 0.998},
    ]
    labels = merge_close_labels(rows)
    assert [text for _, _, text in labels] == ["vae fp32/bf16", "flow fp32", "wgan fp32, diffusion 2-step"]
    assert labels[0][:2] == (0.031, 0.620)


def test_pareto_figure_draws_every_point() -> None:
    ours = [
        {"label": "a x", "ms_per_shower": 0.1, "quality": 0.9},
        {"label": "b x", "ms_per_shower": 1.0, "quality": 0.7},
    ]
    published = [{"label": "Peer", "ms_per_shower": 3.0, "quality": 0.6}]
    fig = figure_pareto(ours, published)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3
    assert {t.get_text() for t in ax.texts} == {"a x", "b x", "Peer"}


def test_ratio_limits_hold_every_well_measured_bin() -> None:
    import numpy as np

    from calosurrogate.plotting.figures import ratio_limits

    counts = np.array([500, 400, 300, 3, 0])
    assert ratio_limits(np.array([1.0, 1.1, 0.9, 40.0, np.nan]), counts) == (0.5, 1.5)  # sparse tail ignored
    low, high = ratio_limits(np.array([0.2, 1.0, 2.5, 1.0, np.nan]), counts)
    assert low <= 0.2 * 0.95 and high >= 2.5 * 1.05  # a well-measured 2.5 stays in the frame
    assert ratio_limits(np.array([30.0, 1.0, 1.0, 1.0, 1.0]), counts)[1] == 10.0  # capped
