"""Batched generation into a CaloChallenge HDF5 file (bounded memory, atomic output)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data import ShowerFile, ShowerWriter
from calosurrogate.devices import resolve_device, resolve_precision
from calosurrogate.models.base import ConfigError, Surrogate
from calosurrogate.simulate.spectra import EnergySpectrum


def conditions_from_file(path: str | os.PathLike[str], model: Surrogate, n: int | None = None) -> np.ndarray:
    """Conditions ``(N, C)`` of a reference file (its incident energies and extra condition datasets).

    Raises:
        ShowerFileError: If the file lacks a condition the model needs or has another voxel count.
    """
    with ShowerFile(path, model.geometry, negative="keep", conditions=model.condition_names[1:]) as f:
        return f.read_conditions(0, n).astype(np.float64)


def conditions_from_spectrum(spec: str, n: int, model: Surrogate, seed: int = 0) -> np.ndarray:
    """Incident energies drawn from a spectrum spec (only for models conditioned on the energy alone)."""
    if model.n_conditions > 1:
        raise ConfigError(
            f"the model also needs the conditions {list(model.condition_names[1:])}: give --energies a file that holds them"
        )
    return EnergySpectrum.parse(spec).sample(n, np.random.default_rng(seed)).reshape(-1, 1)


def sample_to_file(
    model: Surrogate,
    conditions: np.ndarray,
    out: str | os.PathLike[str],
    batch_size: int = 10_000,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, float]:
    """Generate one shower per row of ``conditions`` into ``out``; returns the path and the seconds spent sampling."""
    conditions = np.asarray(conditions)
    dims = {name: int(conditions.shape[1] - 1) for name in model.condition_names[1:2]} if model.n_conditions > 1 else {}
    if model.n_conditions > 2:
        raise ConfigError("writing more than one extra condition dataset is not supported yet")
    seconds = 0.0
    precision = resolve_precision(precision, resolve_device(device))  # the file records what ran
    attrs = {"generator": f"calosurrogate {model.family} surrogate", "precision": precision, "seed": seed}
    with ShowerWriter(
        out, model.geometry.n_voxels, dtype=dtype, force=force, condition_dims=dims, attrs=attrs
    ) as writer:
        bar = tqdm(total=len(conditions), desc=f"sample {model.family}", unit="shower", disable=not progress)
        batches = model.sample_batches(conditions, batch_size, device, precision, seed)
        lo = 0
        while True:
            start = time.perf_counter()
            showers = next(batches, None)
            seconds += time.perf_counter() - start
            if showers is None:
                break
            block = conditions[lo : lo + len(showers)]
            extra = {name: block[:, 1:] for name in dims}
            writer.write(block[:, :1], showers, extra)
            lo += len(showers)
            bar.update(len(showers))
        bar.close()
    return Path(out), seconds
