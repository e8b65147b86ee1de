"""The built-in parametrized shower simulator (GFlash-style; a stand-in for Geant4, not Geant4)."""

from calosurrogate.simulate.detectors import BUILTIN_DETECTORS, DetectorDescription, get_detector
from calosurrogate.simulate.simulator import ShowerSimulator, simulate_to_file
from calosurrogate.simulate.spectra import EnergySpectrum, parse_energy

__all__ = [
    "BUILTIN_DETECTORS",
    "DetectorDescription",
    "EnergySpectrum",
    "ShowerSimulator",
    "get_detector",
    "parse_energy",
    "simulate_to_file",
]
