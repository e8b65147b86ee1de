"""Generating showers from a trained surrogate into CaloChallenge files (one, or shards on Dask)."""

from calosurrogate.sampling.generate import conditions_from_file, conditions_from_spectrum, sample_to_file
from calosurrogate.sampling.sharded import sample_sharded

__all__ = ["conditions_from_file", "conditions_from_spectrum", "sample_sharded", "sample_to_file"]
