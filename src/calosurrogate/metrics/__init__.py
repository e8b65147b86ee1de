"""Metrics: pure functions of shower samples that return a value, its error and their settings.

Nothing here knows about models; definitions follow the CaloChallenge reference evaluation.
"""

from calosurrogate.metrics.cfd import CorrelationAccumulator, cfd, variant_pairs, variant_series
from calosurrogate.metrics.classifier import (
    ClassifierResult,
    ClassifierSettings,
    NormedFromLowLevel,
    classifier_test,
    low_level_inputs,
    low_level_normed_inputs,
)
from calosurrogate.metrics.features import HighLevelFeatures, apply_threshold, compute_features
from calosurrogate.metrics.fpd_kpd import fpd, kpd
from calosurrogate.metrics.result import MetricValue
from calosurrogate.metrics.separation import (
    HistogramPair,
    feature_histograms,
    separation_power,
    separation_power_from_counts,
)

__all__ = [
    "ClassifierResult",
    "ClassifierSettings",
    "CorrelationAccumulator",
    "HighLevelFeatures",
    "HistogramPair",
    "MetricValue",
    "NormedFromLowLevel",
    "apply_threshold",
    "cfd",
    "classifier_test",
    "compute_features",
    "feature_histograms",
    "fpd",
    "kpd",
    "low_level_inputs",
    "low_level_normed_inputs",
    "separation_power",
    "separation_power_from_counts",
    "variant_pairs",
    "variant_series",
]
