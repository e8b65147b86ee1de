"""Inference through a surrogate: the conditions (a detector's configuration) that best explain
a sample of showers, with uncertainties, and their calibration over pseudo-experiments."""

from calosurrogate.inference.conditions import (
    ConditionFit,
    PseudoExperiments,
    fit_conditions,
    infer_from_file,
    pseudo_experiments,
)

__all__ = ["ConditionFit", "PseudoExperiments", "fit_conditions", "infer_from_file", "pseudo_experiments"]
