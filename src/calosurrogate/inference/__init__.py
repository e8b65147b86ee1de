"""Inference through a surrogate: the conditions (a detector's configuration) that best explain
a sample of showers, with uncertainties, and their calibration over pseudo-experiments."""

from calosurrogate.inference.conditions import (
    ConditionFit,
    PseudoExperiments,
    calibration,
    calibration_with_sandwich,
    fit_conditions,
    infer_from_file,
    pseudo_experiments,
)
from calosurrogate.inference.design import Design, optimise_conditions

__all__ = [
    "ConditionFit",
    "Design",
    "PseudoExperiments",
    "calibration",
    "calibration_with_sandwich",
    "fit_conditions",
    "infer_from_file",
    "optimise_conditions",
    "pseudo_experiments",
]
