"""Sharded shower files: one job's showers in many shard files, read as one CaloChallenge file.

``showers.h5`` is then a small file of HDF5 virtual datasets (VDS): ``incident_energies``,
``showers``, the extra conditions and the pairing index map, row range by row range, onto
``showers.h5.shards/shard-00000.h5``, ``shard-00001.h5``, ... . Every HDF5 reader (h5py, ours,
the CaloChallenge evaluation script) reads it as one file, as long as the shard folder stays
beside it; :class:`~calosurrogate.data.ShowerFile` refuses one whose shard is missing rather than
read the fill values HDF5 would give.

A sharded job is described by its manifest (``manifest.json`` in the shard folder): a rerun with
the same settings makes only the shards that are missing, one with other settings is refused.
Each shard is written atomically, so a shard file that exists is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from calosurrogate._io import atomic_output, check_output_path
from calosurrogate.data.hdf5 import INCIDENT_ENERGIES, SHOWERS, ShowerFileError

MANIFEST = "manifest.json"


def shard_folder(out: str | os.PathLike[str]) -> Path:
    """Where the shards of ``out`` live: ``out.shards/`` beside it."""
    out = Path(out)
    return out.parent / f"{out.name}.shards"


def shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:05d}.h5"


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of the shards of ``n`` showers, ``shard_size`` each (the last may be shorter)."""
    if n < 1 or shard_size < 1:
        raise ValueError(f"need at least one shower and one shower per shard, got n={n}, shard_size={shard_size}")
    return [(lo, min(lo + shard_size, n)) for lo in range(0, n, shard_size)]


def shard_seed(seed: int, index: int) -> int:
    """The seed of shard ``index`` of a job seeded with ``seed``: independent streams per shard,
    the same whatever the number of workers."""
    return int(np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1)[0])


def prepare_folder(folder: Path, manifest: dict, force: bool, what: str = "shards") -> None:
    """Create ``folder`` for a job described by ``manifest``, or check that the one there is this job's.

    Args:
        what: What the folder holds, for the message (``"shards"``, ``"chunks"``).

    Raises:
        ValueError: The folder holds another job's shards and ``force`` is not set (with it,
            they are removed).
    """
    if folder.exists():
        try:
            found = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            found = None
        if found != manifest:
            if not force:
                raise ValueError(
                    f"{folder} holds the {what} of a job with other settings ({found}); pass --force to discard "
                    "them, or rerun with that job's settings to resume it"
                )
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(folder / MANIFEST, force=True) as tmp:
        Path(tmp).write_text(json.dumps(manifest, sort_keys=True))


def missing_shards(folder: Path, bounds: list[tuple[int, int]]) -> list[int]:
    """Indices of the shards not yet written.

    Raises:
        ShowerFileError: A shard file with another number of showers than its range.
    """
    missing = []
    for index, (lo, hi) in enumerate(bounds):
        path = shard_path(folder, index)
        if not path.exists():
            missing.append(index)
            continue
        with h5py.File(path, "r") as f:
            if f[SHOWERS].shape[0] != hi - lo:
                raise ShowerFileError(path, SHOWERS, f"holds {f[SHOWERS].shape[0]} showers, its shard has {hi - lo}")
    return missing


def write_virtual_file(
    out: str | os.PathLike[str],
    bounds: list[tuple[int, int]],
    attrs: dict[str, object] | None = None,
    force: bool = False,
) -> Path:
    """The file that reads the shards of ``out`` as one: each dataset of the shards, concatenated.

    Source paths are stored relative to ``out``'s folder, so the pair (file, shard folder) can be
    moved together. Root attributes: the first shard's, updated with ``attrs`` and ``shards``.

    Raises:
        OutputExistsError: ``out`` exists and ``force`` is not set.
        ShowerFileError: A shard is missing or differs from the first in its datasets.
    """
    out = check_output_path(out, force)
    folder = shard_folder(out)
    paths = [shard_path(folder, i) for i in range(len(bounds))]
    absent = [p.name for p in paths if not p.exists()]
    if absent:
        raise ShowerFileError(folder, None, f"lacks {len(absent)} shard(s) of {len(paths)}: {', '.join(absent[:5])}")
    n = bounds[-1][1]
    with h5py.File(paths[0], "r") as first:
        datasets = {
            name: (ds.dtype, ds.shape[1:])
            for name, ds in first.items()
            if isinstance(ds, h5py.Dataset) and ds.ndim >= 1 and ds.shape[0] == bounds[0][1] - bounds[0][0]
        }
        root_attrs = dict(first.attrs)
    if INCIDENT_ENERGIES not in datasets or SHOWERS not in datasets:
        raise ShowerFileError(paths[0], SHOWERS, "is not a shower file (incident_energies and showers)")
    layouts = {name: h5py.VirtualLayout(shape=(n, *shape), dtype=dtype) for name, (dtype, shape) in datasets.items()}
    for path, (lo, hi) in zip(paths, bounds, strict=True):
        relative = os.path.relpath(path, out.parent)
        with h5py.File(path, "r") as shard:
            for name, (dtype, shape) in datasets.items():
                if name not in shard or shard[name].shape != (hi - lo, *shape) or shard[name].dtype != dtype:
                    found = shard[name].shape if name in shard else "nothing"
                    raise ShowerFileError(path, name, f"expected {(hi - lo, *shape)} {dtype} as in the first shard, "
                                          f"found {found}")  # fmt: skip
                layouts[name][lo:hi] = h5py.VirtualSource(relative, name, shape=(hi - lo, *shape))
    with atomic_output(out, force=force) as tmp, h5py.File(tmp, "w", libver="latest") as f:
        for name, layout in layouts.items():
            fill = np.nan if np.issubdtype(layout.dtype, np.floating) else -1
            f.create_virtual_dataset(name, layout, fillvalue=fill)
        f.attrs.update({**root_attrs, **(attrs or {}), "shards": len(paths)})
    return out


__all__ = [
    "MANIFEST",
    "missing_shards",
    "prepare_folder",
    "shard_bounds",
    "shard_folder",
    "shard_path",
    "shard_seed",
    "write_virtual_file",
]
