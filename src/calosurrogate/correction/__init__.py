"""Correcting a cheap simulation or a surrogate toward its nominal simulation.

Two tools (Snowmass 2021 computational frontier, "Machine learning and LHC event generation",
section 4; CMS's refinement, arXiv:2309.12919):

- :mod:`.reweight`: per-shower weights ``p_nominal(x) / p_modified(x)`` from a classifier
  (the likelihood-ratio trick, DCTR arXiv:1907.08209), cross-fitted, calibrated and clipped;
  every metric of :mod:`calosurrogate.evaluation` accepts them.
- :mod:`.refine`: a network that maps a modified shower to a refined one, trained on paired
  showers by regression or on unpaired ones by matching distributions.
"""

from calosurrogate.correction.reweight import Reweighting, ReweightSettings, reweight_files, reweight_samples

__all__ = ["ReweightSettings", "Reweighting", "reweight_files", "reweight_samples"]
