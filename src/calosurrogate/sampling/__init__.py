"""Generating showers from a trained surrogate into CaloChallenge files."""

from calosurrogate.sampling.generate import conditions_from_file, conditions_from_spectrum, sample_to_file

__all__ = ["conditions_from_file", "conditions_from_spectrum", "sample_to_file"]
