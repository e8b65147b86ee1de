"""Shower data: CaloChallenge HDF5 input/output, streaming, validation and inspection."""

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

__all__ = [
    "INCIDENT_ENERGIES",
    "SHOWERS",
    "FileSummary",
    "ShowerBatch",
    "ShowerFile",
    "ShowerFileError",
    "ShowerWriter",
    "inspect_file",
    "read_showers",
    "write_showers",
]
