"""Per-shower weight files: one weight for each shower of a shower file, in its order.

Layout: dataset ``weights`` ``(N,)`` float64, optionally ``fold`` ``(N,)`` (the cross-fitting
part a weight came from); root attributes record what made them (the files' paths and SHA-256,
the settings, the effective sample size and the clipped fraction).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from calosurrogate._io import atomic_output
from calosurrogate.data.hdf5 import ShowerFileError

WEIGHTS = "weights"


def write_weights(
    path: str | os.PathLike[str],
    weights: np.ndarray,
    attrs: dict[str, object] | None = None,
    fold: np.ndarray | None = None,
    force: bool = False,
) -> Path:
    """Write a weight file atomically; an existing one is kept unless ``force``. Attribute values
    that HDF5 cannot hold directly (dicts, lists) are stored as JSON text."""
    with atomic_output(path, force=force) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(WEIGHTS, data=np.asarray(weights, dtype=np.float64))
        if fold is not None:
            f.create_dataset("fold", data=np.asarray(fold, dtype=np.int16))
        for key, value in (attrs or {}).items():
            f.attrs[key] = json.dumps(value) if isinstance(value, dict | list | tuple) else value
    return Path(path)


def read_weights(path: str | os.PathLike[str]) -> np.ndarray:
    """The weights of a weight file, ``(N,)`` float64.

    Raises:
        ShowerFileError: If the file is missing, not HDF5, lacks ``weights`` or holds a weight
            that is negative or not finite.
    """
    path = Path(path)
    if not path.is_file():
        raise ShowerFileError(path, None, "no such weight file")
    try:
        with h5py.File(path, "r") as f:
            if WEIGHTS not in f:
                raise ShowerFileError(
                    path, WEIGHTS, f"missing; a weight file holds a '{WEIGHTS}' dataset (calo reweight)"
                )
            weights = np.asarray(f[WEIGHTS][...], dtype=np.float64).reshape(-1)
    except OSError as err:
        raise ShowerFileError(path, None, f"not a readable HDF5 file ({err})") from None
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        raise ShowerFileError(path, WEIGHTS, f"{int(bad.sum())} weights are negative or not finite")
    return weights
