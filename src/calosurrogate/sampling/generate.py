"""Batched generation into a CaloChallenge HDF5 file (bounded memory, atomic output)."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data import INCIDENT_ENERGIES, ShowerFile, ShowerFileError, ShowerWriter
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.devices import resolve_device, resolve_precision
from calosurrogate.models.base import ConfigError, ExtrapolationWarning, Surrogate


def conditions_from_file(path: str | os.PathLike[str], model: Surrogate, n: int | None = None) -> np.ndarray:
    """Conditions ``(N, C)`` of a reference file (its incident energies and extra condition datasets).

    Raises:
        ShowerFileError: If the file lacks a condition the model needs, has another voxel count,
            holds no showers or a zero, negative or non-finite incident energy.
    """
    with ShowerFile(path, model.geometry, negative="keep", conditions=model.condition_names[1:]) as f:
        if f.n_showers == 0:
            raise ShowerFileError(path, INCIDENT_ENERGIES, "holds no showers, so no incident energies to sample at")
        return f.read_conditions(0, n).astype(np.float64)


def check_conditions(conditions: np.ndarray, model: Surrogate) -> np.ndarray:
    """Conditions ``(N, C)`` as float64 after checking that a model can sample them.

    Incident energies (column 0, MeV) must be finite and positive, the other columns finite.
    Values outside the range the model saw in training give a :class:`ExtrapolationWarning`.

    Raises:
        ConfigError: No rows, the wrong number of columns, or values that are not allowed.
    """
    conditions = np.asarray(conditions, dtype=np.float64)
    if conditions.ndim == 1:
        conditions = conditions.reshape(-1, 1)
    if conditions.ndim != 2 or conditions.shape[1] != model.n_conditions:
        raise ConfigError(f"conditions of shape {conditions.shape}; the model needs (N, {model.n_conditions}) "
                          f"with columns {list(model.condition_names)}")  # fmt: skip
    if len(conditions) == 0:
        raise ConfigError("no conditions to sample: ask for at least one shower")
    if not np.isfinite(conditions).all():
        raise ConfigError(f"{int((~np.isfinite(conditions)).sum())} conditions are NaN or infinite")
    if (conditions[:, 0] <= 0).any():
        raise ConfigError(f"{int((conditions[:, 0] <= 0).sum())} incident energies are zero or negative; "
                          "they must be positive (MeV)")  # fmt: skip
    seen = model.condition_range
    if seen is not None:
        low, high = np.asarray(seen[0]), np.asarray(seen[1])
        outside = (conditions < low) | (conditions > high)
        for column in np.flatnonzero(outside.any(axis=0)):
            values = conditions[:, column]
            beyond = (
                [f"{int((values < low[column]).sum())} below, down to {values.min():.6g}"]
                if values.min() < low[column]
                else []
            )
            if values.max() > high[column]:
                beyond.append(f"{int((values > high[column]).sum())} above, up to {values.max():.6g}")
            warnings.warn(
                f"{int(outside[:, column].sum())} of {len(conditions)} values of {model.condition_names[column]} lie "
                f"outside the range seen in training [{low[column]:.6g}, {high[column]:.6g}] ({'; '.join(beyond)}): "
                "the surrogate extrapolates there",
                ExtrapolationWarning,
                stacklevel=2,
            )
    return conditions


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
    """Generate one shower per row of ``conditions`` into ``out``; returns the path and the seconds spent sampling
    (after the model's one-time preparation, :meth:`~calosurrogate.models.Surrogate.prepare_sampling`).

    The file appears only when it holds one shower for every row of ``conditions``.

    Raises:
        ConfigError: Unusable conditions (see :func:`check_conditions`) or ``batch_size`` < 1.
        OutputExistsError: ``out`` exists (or appears meanwhile) and ``force`` is false.
    """
    conditions = check_conditions(conditions, model)
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    extra_names = model.condition_names[1:]
    if len(extra_names) == 1:
        dims = {extra_names[0]: int(conditions.shape[1] - 1)}
    elif conditions.shape[1] == model.n_conditions:  # several extra conditions, one column each
        dims = dict.fromkeys(extra_names, 1)
    elif extra_names:
        raise ConfigError(f"{conditions.shape[1] - 1} condition columns for the {len(extra_names)} conditions "
                          f"{list(extra_names)}: with several, each must be one column")  # fmt: skip
    else:
        dims = {}
    seconds = 0.0
    # the file records what ran; "auto" depends on the batch size too (small CPU batches: fp32)
    precision = resolve_precision(precision, resolve_device(device), min(batch_size, len(conditions)))
    attrs = {"generator": f"calosurrogate {model.family} surrogate", "precision": precision, "seed": seed}
    # one-time work (compiling) is not a shower's cost: done before the timed passes
    model.prepare_sampling(conditions[:batch_size], device, precision)
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
            bounds = np.cumsum([1, *dims.values()])
            extra = {
                name: block[:, lo_col:hi_col]
                for name, lo_col, hi_col in zip(dims, bounds[:-1], bounds[1:], strict=True)
            }
            writer.write(block[:, :1], showers, extra)
            lo += len(showers)
            bar.update(len(showers))
        bar.close()
        if lo != len(conditions):  # raised inside the writer: no file appears
            raise RuntimeError(f"the {model.family} model gave {lo} showers for {len(conditions)} conditions")
    return Path(out), seconds
