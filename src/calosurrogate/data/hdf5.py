"""CaloChallenge HDF5 files: validated, streamed reading and safe, chunked writing.

A file holds two root datasets, ``incident_energies`` ``(N, 1)`` and ``showers``
``(N, n_voxels)``, both in MeV (float32 or float64). Extra per-shower conditions (incident
angles, detector parameters) are further root datasets of shape ``(N,)`` or ``(N, k)``.
Nothing here assumes a file fits in memory: a dataset-3 file of 100k showers is 16 GB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from calosurrogate._io import atomic_output, check_output_path
from calosurrogate.geometry import CylindricalGeometry, geometries_with_voxels

INCIDENT_ENERGIES = "incident_energies"
SHOWERS = "showers"
PAIRING_INDEX = "pairing_index"
NegativePolicy = Literal["error", "clip", "keep"]


def as_columns(values: np.ndarray) -> np.ndarray:
    """A per-shower dataset ``(N,)`` or ``(N, ...)`` as ``(N, k)`` columns (also for N = 0)."""
    return values.reshape(values.shape[0], int(np.prod(values.shape[1:], dtype=np.int64)))


class ShowerFileError(ValueError):
    """A shower file cannot be used as it is; the message names the file, dataset and problem."""

    def __init__(self, path: str | os.PathLike[str], dataset: str | None, problem: str) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self.problem = problem
        where = f"{self.path}" + (f" [{dataset}]" if dataset else "")
        super().__init__(f"{where}: {problem}")


@dataclass
class ShowerBatch:
    """A block of showers in memory.

    Attributes:
        incident_energies: Incident particle energies in MeV, shape ``(n, 1)``.
        showers: Voxel energies in MeV, shape ``(n, n_voxels)``.
        conditions: Extra per-shower conditions by dataset name, each ``(n, k)``.
    """

    incident_energies: np.ndarray
    showers: np.ndarray
    conditions: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.incident_energies)

    def __getitem__(self, index: slice | np.ndarray) -> ShowerBatch:
        return ShowerBatch(
            self.incident_energies[index],
            self.showers[index],
            {k: v[index] for k, v in self.conditions.items()},
        )

    @staticmethod
    def concatenate(batches: Sequence[ShowerBatch]) -> ShowerBatch:
        """Join batches along the shower axis."""
        if not batches:
            raise ValueError("no batch to concatenate")
        return ShowerBatch(
            np.concatenate([b.incident_energies for b in batches]),
            np.concatenate([b.showers for b in batches]),
            {k: np.concatenate([b.conditions[k] for b in batches]) for k in batches[0].conditions},
        )


class ShowerFile:
    """A CaloChallenge HDF5 file opened for validated, streamed reading.

    Opening checks the structure (datasets present, shapes agree with each other and with
    the geometry); content checks (NaN/inf, negative energies) run on every block read.

    Args:
        path: The HDF5 file.
        geometry: If given, the voxel count must match it.
        negative: What to do with negative voxel energies: ``"error"`` (default) stops with
            their count, ``"clip"`` sets them to 0 as the official data creation did,
            ``"keep"`` leaves them.
        conditions: Names of extra per-shower condition datasets to read alongside.

    Raises:
        ShowerFileError: On any structural problem, naming file, dataset and problem.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        geometry: CylindricalGeometry | None = None,
        negative: NegativePolicy = "error",
        conditions: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.geometry = geometry
        if negative not in ("error", "clip", "keep"):
            raise ValueError(f"negative must be 'error', 'clip' or 'keep', got {negative!r}")
        self.negative = negative
        if not self.path.exists():
            raise ShowerFileError(self.path, None, "no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise ShowerFileError(
                self.path, None, f"not a readable HDF5 file (is it truncated or of another format?): {err}"
            ) from err
        try:
            self._check_structure(conditions)
        except BaseException:
            self._file.close()
            raise
        self.condition_names = tuple(conditions)

    def _check_structure(self, conditions: Sequence[str]) -> None:
        f = self._file
        for name in (INCIDENT_ENERGIES, SHOWERS):
            if name not in f:
                present = ", ".join(sorted(f.keys())) or "none"
                raise ShowerFileError(self.path, name, f"dataset missing (root datasets present: {present})")
            if not isinstance(f[name], h5py.Dataset):
                raise ShowerFileError(self.path, name, "is a group, expected a dataset")
        for name in (INCIDENT_ENERGIES, SHOWERS, *(c for c in conditions if c in f)):
            self._check_shards(name)
        energies, showers = f[INCIDENT_ENERGIES], f[SHOWERS]
        if energies.ndim != 2 or energies.shape[1] != 1:
            raise ShowerFileError(self.path, INCIDENT_ENERGIES, f"shape {energies.shape}, expected (N, 1)")
        if showers.ndim != 2 or showers.shape[1] == 0:
            raise ShowerFileError(
                self.path, SHOWERS, f"shape {showers.shape}, expected (N, n_voxels) with n_voxels >= 1"
            )
        if energies.shape[0] != showers.shape[0]:
            raise ShowerFileError(
                self.path,
                SHOWERS,
                f"{showers.shape[0]} showers but {energies.shape[0]} incident energies: the datasets must have equal N",
            )
        for name in (INCIDENT_ENERGIES, SHOWERS):
            if f[name].dtype.kind != "f":
                raise ShowerFileError(self.path, name, f"dtype {f[name].dtype}, expected float32 or float64")
        if self.geometry is not None and showers.shape[1] != self.geometry.n_voxels:
            matches = geometries_with_voxels(showers.shape[1])
            hint = f"; it matches the built-in {', '.join(matches)}" if matches else ""
            raise ShowerFileError(
                self.path,
                SHOWERS,
                f"{showers.shape[1]} voxels per shower, but geometry {self.geometry.name!r} has "
                f"{self.geometry.n_voxels}{hint}",
            )
        for name in conditions:
            if name not in f:
                raise ShowerFileError(
                    self.path, name,
                    f"condition dataset missing (available: {', '.join(self.available_conditions) or 'none'})",
                )  # fmt: skip
            if not isinstance(f[name], h5py.Dataset) or f[name].ndim == 0:
                raise ShowerFileError(self.path, name, "expected a dataset of shape (N,) or (N, k)")
            if f[name].dtype.kind not in "fiu":
                raise ShowerFileError(self.path, name, f"dtype {f[name].dtype}, expected numbers")
            if f[name].shape[0] != energies.shape[0]:
                raise ShowerFileError(self.path, name, f"first dimension {f[name].shape[0]} != N = {energies.shape[0]}")

    # ----------------------------------------------------------- properties
    @property
    def n_showers(self) -> int:
        """Number of showers N."""
        return int(self._file[SHOWERS].shape[0])

    @property
    def n_voxels(self) -> int:
        """Voxels per shower."""
        return int(self._file[SHOWERS].shape[1])

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the showers."""
        return self._file[SHOWERS].dtype

    @property
    def available_conditions(self) -> list[str]:
        """Root datasets other than the two standard ones whose first dimension is N."""
        n = self._file[INCIDENT_ENERGIES].shape[0]
        return sorted(
            k
            for k, v in self._file.items()
            if k not in (INCIDENT_ENERGIES, SHOWERS) and isinstance(v, h5py.Dataset) and v.shape[:1] == (n,)
        )

    @property
    def attrs(self) -> dict[str, object]:
        """The file's root attributes (provenance written by this package, if any)."""
        return dict(self._file.attrs)

    # ---------------------------------------------------------------- reading
    def read(self, start: int = 0, stop: int | None = None) -> ShowerBatch:
        """Read showers ``[start, stop)`` into memory, checked for NaN/inf and negatives."""
        stop = self.n_showers if stop is None else min(stop, self.n_showers)
        try:
            energies = self._file[INCIDENT_ENERGIES][start:stop]
            showers = self._file[SHOWERS][start:stop]
            conds = {}
            for name in self.condition_names:
                c = self._file[name][start:stop]
                conds[name] = as_columns(c)
        except OSError as err:
            raise ShowerFileError(
                self.path, SHOWERS, f"cannot read showers {start}:{stop} (file truncated or corrupt?): {err}"
            ) from err
        self._check_energies(energies, start)
        showers = self._check_values(SHOWERS, showers, start, allow_negative=True)
        for name, values in conds.items():
            self._check_values(name, values, start, allow_negative=False)
        return ShowerBatch(energies, showers, conds)

    def read_conditions(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Incident energies and the opened condition datasets of showers ``[start, stop)``, ``(n, C)``,
        without reading the showers themselves."""
        stop = self.n_showers if stop is None else min(stop, self.n_showers)
        try:
            energies = self._file[INCIDENT_ENERGIES][start:stop]
            extra = [as_columns(np.asarray(self._file[name][start:stop])) for name in self.condition_names]
        except OSError as err:
            raise ShowerFileError(
                self.path, INCIDENT_ENERGIES, f"cannot read rows {start}:{stop} (file truncated or corrupt?): {err}"
            ) from err
        self._check_energies(energies, start)
        for name, values in zip(self.condition_names, extra, strict=True):
            self._check_values(name, values, start, allow_negative=False)
        return np.concatenate([energies, *extra], axis=1)

    def _check_shards(self, name: str) -> None:
        """A virtual dataset (a sharded file) reads fill values where a shard is missing: refuse it instead."""
        dataset = self._file[name]
        if not isinstance(dataset, h5py.Dataset) or not dataset.is_virtual:
            return
        for source in dataset.virtual_sources():
            shard = Path(source.file_name)
            if not (shard if shard.is_absolute() else self.path.parent / shard).exists():
                raise ShowerFileError(self.path, name, f"reads from the shard {source.file_name}, which is missing "
                                      f"(a sharded file needs its shards beside it, in {shard.parent})")  # fmt: skip

    def _check_energies(self, energies: np.ndarray, start: int) -> None:
        """Incident energies must be finite and positive (MeV)."""
        self._check_values(INCIDENT_ENERGIES, energies, start, allow_negative=False)
        if np.any(energies <= 0):
            bad = int((energies <= 0).sum())
            first = start + int(np.argmax(energies[:, 0] <= 0))
            raise ShowerFileError(
                self.path, INCIDENT_ENERGIES, f"{bad} zero or negative incident energies (first at shower {first})"
            )

    def _check_values(self, name: str, values: np.ndarray, start: int, allow_negative: bool) -> np.ndarray:
        finite = np.isfinite(values)
        if not finite.all():
            bad = int((~finite).sum())
            first = start + int(np.argwhere(~finite)[0, 0])
            raise ShowerFileError(
                self.path,
                name,
                f"{bad} NaN or infinite values in rows {start}:{start + len(values)} (first at row {first})",
            )
        if allow_negative and self.negative != "keep":
            negative = values < 0
            if negative.any():
                if self.negative == "clip":
                    return np.where(negative, 0.0, values).astype(values.dtype, copy=False)
                raise ShowerFileError(
                    self.path,
                    name,
                    f"{int(negative.sum())} negative energies in rows {start}:{start + len(values)}; "
                    "clip them at 0 as the official data creation did with negative='clip' (--clip-negative)",
                )
        return values

    def iter_chunks(self, chunk_size: int = 10_000, start: int = 0, stop: int | None = None) -> Iterator[ShowerBatch]:
        """Yield consecutive blocks of at most ``chunk_size`` showers (memory stays bounded)."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        stop = self.n_showers if stop is None else min(stop, self.n_showers)
        for lo in range(start, stop, chunk_size):
            yield self.read(lo, min(lo + chunk_size, stop))

    def close(self) -> None:
        """Close the underlying HDF5 file."""
        self._file.close()

    def __enter__(self) -> ShowerFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_showers(
    path: str | os.PathLike[str],
    geometry: CylindricalGeometry | None = None,
    negative: NegativePolicy = "error",
    max_showers: int | None = None,
    conditions: Sequence[str] = (),
) -> ShowerBatch:
    """Read a whole file (or its first ``max_showers``) into memory, validated."""
    with ShowerFile(path, geometry, negative, conditions) as f:
        return f.read(0, max_showers)


class ShowerWriter:
    """Write showers in blocks to a CaloChallenge HDF5 file.

    A new file is written under a temporary name and renamed when the ``with`` block ends
    without error; an existing file is never overwritten unless ``force``. With ``append``,
    showers are added to an existing file in place; if the block fails, the datasets are
    cut back to their former length, so the file never holds a half-written block.

    Args:
        path: Output file.
        n_voxels: Voxels per shower.
        dtype: ``"float32"`` or ``"float64"``.
        compression: HDF5 filter (``"gzip"`` as the official files, or None).
        chunk_showers: Showers per HDF5 chunk (rows); reading by showers stays cheap.
        condition_dims: Extra condition datasets to create, name -> number of columns.
        force: Overwrite an existing file.
        append: Add to an existing file instead of creating one.
        attrs: Root attributes to record (provenance).
        pairing_index: Also write ``pairing_index`` ``(N,)`` int64, each shower's number in its
            run: a cheap and a nominal simulation made with the same seed share their primaries
            row by row, and this index keeps the pairs together when files are cut or shuffled.
        first_index: The pairing index of the first shower (a shard of a larger run starts at its offset).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_voxels: int,
        dtype: str = "float32",
        compression: str | None = "gzip",
        chunk_showers: int = 1000,
        condition_dims: dict[str, int] | None = None,
        force: bool = False,
        append: bool = False,
        attrs: dict[str, object] | None = None,
        pairing_index: bool = False,
        first_index: int = 0,
    ) -> None:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.path = Path(path)
        self.n_voxels = n_voxels
        self.dtype = np.dtype(dtype)
        self.compression = compression
        self.chunk_showers = chunk_showers
        self.condition_dims = dict(condition_dims or {})
        self.force = force
        self.append = append
        self.attrs = dict(attrs or {})
        self.n_written = 0
        self._ctx = None
        self._file: h5py.File | None = None
        self._start_n = 0
        if append and force:
            raise ValueError("append and force exclude each other")
        if append and pairing_index:
            raise ValueError("a pairing index is written with a new file, not appended")
        self.pairing_index = pairing_index
        self.first_index = first_index
        if not append:
            check_output_path(self.path, force)

    def __enter__(self) -> ShowerWriter:
        if self.append:
            with ShowerFile(self.path, conditions=tuple(self.condition_dims)) as existing:
                if existing.n_voxels != self.n_voxels:
                    raise ShowerFileError(
                        self.path,
                        SHOWERS,
                        f"cannot append {self.n_voxels}-voxel showers to {existing.n_voxels}-voxel ones",
                    )
            self._file = h5py.File(self.path, "r+")
            self._start_n = self._file[SHOWERS].shape[0]
            return self
        self._ctx = atomic_output(self.path, force=self.force)
        tmp = self._ctx.__enter__()
        self._file = h5py.File(tmp, "w")
        opts = {"compression": self.compression} if self.compression else {}
        rows = self.chunk_showers
        self._file.create_dataset(
            INCIDENT_ENERGIES, shape=(0, 1), maxshape=(None, 1), dtype=self.dtype, chunks=(max(rows, 1024), 1), **opts
        )
        self._file.create_dataset(
            SHOWERS, shape=(0, self.n_voxels), maxshape=(None, self.n_voxels), dtype=self.dtype,
            chunks=(min(rows, max(1, (1 << 20) // (4 * self.n_voxels))) or 1, self.n_voxels), **opts,
        )  # fmt: skip
        for name, k in self.condition_dims.items():
            self._file.create_dataset(
                name, shape=(0, k), maxshape=(None, k), dtype=self.dtype, chunks=(1024, k), **opts
            )
        if self.pairing_index:
            self._file.create_dataset(
                PAIRING_INDEX, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,), **opts
            )
        for key, value in self.attrs.items():
            self._file.attrs[key] = value
        return self

    def write(
        self, incident_energies: np.ndarray, showers: np.ndarray, conditions: dict[str, np.ndarray] | None = None
    ) -> None:
        """Append a block: energies ``(n, 1)`` or ``(n,)`` MeV, showers ``(n, n_voxels)`` MeV."""
        if self._file is None:
            raise RuntimeError("use ShowerWriter inside a with-block")
        energies = np.asarray(incident_energies).reshape(-1, 1)
        showers = np.asarray(showers)
        if showers.shape != (len(energies), self.n_voxels):
            raise ValueError(f"showers shape {showers.shape}, expected ({len(energies)}, {self.n_voxels})")
        conditions = conditions or {}
        if set(conditions) != set(self.condition_dims):
            raise ValueError(f"conditions {sorted(conditions)} differ from declared {sorted(self.condition_dims)}")
        n_old = self._file[SHOWERS].shape[0]
        n_new = n_old + len(energies)
        for name, values in [(INCIDENT_ENERGIES, energies), (SHOWERS, showers)] + [
            (k, np.asarray(v).reshape(len(energies), -1)) for k, v in conditions.items()
        ]:
            ds = self._file[name]
            ds.resize(n_new, axis=0)
            ds[n_old:n_new] = values
        if self.pairing_index:
            self._file[PAIRING_INDEX].resize(n_new, axis=0)
            self._file[PAIRING_INDEX][n_old:n_new] = np.arange(n_old, n_new) + self.first_index
        self.n_written += len(energies)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        assert self._file is not None
        if self.append:
            if exc_type is not None:
                for name in [INCIDENT_ENERGIES, SHOWERS, *self.condition_dims]:
                    self._file[name].resize(self._start_n, axis=0)
            self._file.close()
            return
        self._file.close()
        assert self._ctx is not None
        self._ctx.__exit__(exc_type, exc, tb)


def write_showers(
    path: str | os.PathLike[str],
    incident_energies: np.ndarray,
    showers: np.ndarray,
    dtype: str = "float32",
    force: bool = False,
    conditions: dict[str, np.ndarray] | None = None,
    attrs: dict[str, object] | None = None,
) -> Path:
    """Write an in-memory set of showers to a new file (see :class:`ShowerWriter`)."""
    showers = np.asarray(showers)
    conditions = conditions or {}
    dims = {k: int(np.asarray(v).reshape(len(showers), -1).shape[1]) for k, v in conditions.items()}
    with ShowerWriter(path, showers.shape[1], dtype=dtype, force=force, condition_dims=dims, attrs=attrs) as w:
        w.write(incident_energies, showers, conditions)
    return Path(path)
