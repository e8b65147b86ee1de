"""Figures of an evaluation: histograms with ratio panels, shower images, correlation maps."""

from calosurrogate.plotting.benchmarks import figure_pareto, figure_timing
from calosurrogate.plotting.figures import (
    figure_cfd_maps,
    figure_histogram,
    figure_layer_correlations,
    figure_layer_grid,
    figure_mean_showers,
    figure_profiles,
    figure_response,
    figure_separation_overview,
)

__all__ = [
    "figure_cfd_maps",
    "figure_histogram",
    "figure_layer_correlations",
    "figure_layer_grid",
    "figure_mean_showers",
    "figure_pareto",
    "figure_profiles",
    "figure_response",
    "figure_separation_overview",
    "figure_timing",
]
