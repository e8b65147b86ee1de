"""Shower data: CaloChallenge HDF5 input/output, streaming, validation and inspection; incident-energy spectra.

Torch-free (the command line starts fast); the torch pieces are imported from their modules:
:mod:`calosurrogate.data.stream` (training batches) and :mod:`calosurrogate.data.transforms`.
"""

from calosurrogate.data.hdf5 import (
    INCIDENT_ENERGIES,
    SHOWERS,
    ShowerBatch,
    ShowerFile,
    ShowerFileError,
    ShowerWriter,
    read_showers,
    write_showers,
)
from calosurrogate.data.inspect import FileSummary, inspect_file
from calosurrogate.data.spectra import EnergySpectrum, parse_energy

__all__ = [
    "INCIDENT_ENERGIES",
    "SHOWERS",
    "EnergySpectrum",
    "FileSummary",
    "ShowerBatch",
    "ShowerFile",
    "ShowerFileError",
    "ShowerWriter",
    "inspect_file",
    "parse_energy",
    "read_showers",
    "write_showers",
]
