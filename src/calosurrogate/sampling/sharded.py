"""Generation in shards on Dask: one file per shard, read as one file (:mod:`calosurrogate.data.shards`).

The conditions are split into row ranges of ``shard_size``; shard ``i`` samples its rows with the
seed :func:`~calosurrogate.data.shards.shard_seed` ``(seed, i)``, so the output depends on the
seed and the shard size, never on the number of workers, and a rerun after a kill makes only the
shards that are missing. The model is sent to each worker once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from calosurrogate._io import check_output_path
from calosurrogate.cluster import dask_client, run_tasks
from calosurrogate.data.shards import (
    missing_shards,
    prepare_folder,
    shard_bounds,
    shard_folder,
    shard_path,
    shard_seed,
    write_virtual_file,
)
from calosurrogate.models.base import Surrogate
from calosurrogate.sampling.generate import check_conditions, sample_to_file


def _sample_shard(conditions: np.ndarray, path: str, batch_size: int, device: str, precision: str, seed: int,
                  dtype: str, model: Surrogate) -> float:  # fmt: skip
    """Sample one shard; returns its sampling seconds (0 when it is already there)."""
    if Path(path).exists():  # a rerun, or a task Dask ran twice: the shard is there, whole
        return 0.0
    _, seconds = sample_to_file(model, conditions, path, batch_size, device, precision, seed, dtype, force=True,
                                progress=False)  # fmt: skip
    return seconds


def model_fingerprint(model: Surrogate) -> str:
    """A digest of the model's weights, configuration (its sampler's included) and conditions."""
    digest = hashlib.sha256()
    record = model.checkpoint_dict()
    digest.update(json.dumps([record["family"], record["config"], record["condition_names"]], default=str).encode())
    for name, tensor in sorted(record["state_dict"].items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def sample_sharded(
    model: Surrogate,
    conditions: np.ndarray,
    out: str | os.PathLike[str],
    shard_size: int = 10_000,
    batch_size: int = 10_000,
    device: str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    dtype: str = "float32",
    scheduler: str | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, float, float]:
    """One shower per row of ``conditions``, sampled in shards on Dask into ``out`` (a file of
    virtual datasets) and ``out.shards/``.

    Returns the path, the sampling seconds of the shards made now (summed over the workers) and
    the wall seconds they took.

    Raises:
        ConfigError: Unusable conditions (:func:`~calosurrogate.sampling.check_conditions`).
        ValueError: A shard folder of another job (other model, conditions or settings).
        OutputExistsError: ``out`` exists and ``force`` is not set.
    """
    conditions = check_conditions(conditions, model)
    out = check_output_path(out, force)
    folder = shard_folder(out)
    manifest = {"kind": "sample", "family": model.family, "model": model_fingerprint(model), "n": len(conditions),
                "conditions": hashlib.sha256(conditions.tobytes()).hexdigest()[:16], "shard_size": shard_size,
                "batch_size": batch_size, "device": device, "precision": precision, "seed": seed, "dtype": dtype}  # fmt: skip
    prepare_folder(folder, manifest, force)
    bounds = shard_bounds(len(conditions), shard_size)
    todo = missing_shards(folder, bounds)
    seconds = wall = 0.0
    if todo:
        arguments = [(conditions[lo:hi], str(shard_path(folder, i)), batch_size, device, precision,
                      shard_seed(seed, i), dtype) for i, (lo, hi) in ((i, bounds[i]) for i in todo)]  # fmt: skip
        sizes = [bounds[i][1] - bounds[i][0] for i in todo]
        with dask_client(scheduler, workers) as client:
            results, wall = run_tasks(client, _sample_shard, arguments, sizes, f"sample {model.family}", progress,
                                      shared={"model": model})  # fmt: skip
        seconds = float(sum(results))
    write_virtual_file(out, bounds, {"seed": seed, "shard_size": shard_size}, force=force)
    return out, seconds, wall


__all__ = ["model_fingerprint", "sample_sharded"]
