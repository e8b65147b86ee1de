"""Shower data: CaloChallenge HDF5 input/output, streaming, validation and inspection; incident-energy spectra."""

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
from calosurrogate.data.stream import ShowerStream

__all__ = [
    "INCIDENT_ENERGIES",
    "SHOWERS",
    "EnergySpectrum",
    "FileSummary",
    "ShowerBatch",
    "ShowerFile",
    "ShowerFileError",
    "ShowerStream",
    "ShowerWriter",
    "inspect_file",
    "parse_energy",
    "read_showers",
    "write_showers",
]
