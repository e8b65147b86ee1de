"""The built-in parametrized shower simulator (GFlash-style; a stand-in for Geant4, not Geant4)."""

from calosurrogate.simulate.detectors import BUILTIN_DETECTORS, DetectorDescription, get_detector
from calosurrogate.simulate.sharded import simulate_sharded
from calosurrogate.simulate.simulator import ShowerSimulator, simulate_to_file

__all__ = [
    "BUILTIN_DETECTORS",
    "DetectorDescription",
    "ShowerSimulator",
    "get_detector",
    "simulate_sharded",
    "simulate_to_file",
]
