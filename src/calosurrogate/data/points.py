"""Showers as point clouds: an HDF5 layout of variable-length showers, its writer and reader, and
the projection of points onto any grid of cells.

A file holds, for ``N`` showers and ``M`` points in all:

- ``incident_energies`` ``(N, 1)``: MeV (as in CaloChallenge files);
- ``directions`` ``(N, 3)``: the photon's unit direction (``z`` along the layer normal);
- ``entry_points`` ``(N, 2)``: where it enters the front face, mm;
- ``offsets`` ``(N + 1,)`` int64: shower ``i`` is ``points[offsets[i]:offsets[i + 1]]``;
- ``points`` ``(M, 4)`` float32: ``x, y`` (mm, in the local frame of
  :class:`~calosurrogate.geometry.planar.PlanarCalorimeter`), ``layer`` (0-based, stored as a
  float) and ``energy`` (MeV) of each point;

and the root attributes ``format`` (:data:`FORMAT`) and ``geometry`` (a planar calorimeter's name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from calosurrogate._io import atomic_output, check_output_path
from calosurrogate.data.hdf5 import ShowerFileError
from calosurrogate.geometry.planar import PLANAR_CALORIMETERS, PlanarCalorimeter

FORMAT = "calosurrogate point clouds 1"
X, Y, LAYER, ENERGY = range(4)
CONDITION_DATASETS = {"incident_energies": 1, "directions": 3, "entry_points": 2}


@dataclass
class PointClouds:
    """A batch of showers as points.

    Attributes:
        incident_energies: MeV, ``(N,)``.
        directions: Unit vectors, ``(N, 3)``.
        entry_points: mm, ``(N, 2)``.
        offsets: ``(N + 1,)`` int64, starting at 0.
        points: ``(M, 4)``: ``x, y`` (mm, local frame), ``layer``, ``energy`` (MeV).
    """

    incident_energies: np.ndarray
    directions: np.ndarray
    entry_points: np.ndarray
    offsets: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return len(self.incident_energies)

    @property
    def n_points(self) -> np.ndarray:
        """Points per shower, ``(N,)``."""
        return np.diff(self.offsets)

    @property
    def shower_index(self) -> np.ndarray:
        """Each point's shower, ``(M,)``."""
        return np.repeat(np.arange(len(self)), self.n_points)

    def shower(self, i: int) -> np.ndarray:
        return self.points[self.offsets[i] : self.offsets[i + 1]]

    def select(self, index: np.ndarray) -> PointClouds:
        """The showers ``index`` (integers, in that order)."""
        index = np.asarray(index, dtype=np.int64)
        counts = self.n_points[index]
        starts = self.offsets[index]
        take = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return PointClouds(self.incident_energies[index], self.directions[index], self.entry_points[index],
                           np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.points[take])  # fmt: skip

    @classmethod
    def concatenate(cls, parts: list[PointClouds]) -> PointClouds:
        if not parts:
            raise ValueError("no point clouds to concatenate")
        counts = np.concatenate([p.n_points for p in parts])
        return cls(np.concatenate([p.incident_energies for p in parts]),
                   np.concatenate([p.directions for p in parts]),
                   np.concatenate([p.entry_points for p in parts]),
                   np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   np.concatenate([p.points for p in parts]))  # fmt: skip

    @classmethod
    def from_showers(cls, incident_energies: np.ndarray, directions: np.ndarray, entry_points: np.ndarray,
                     showers: list[np.ndarray]) -> PointClouds:  # fmt: skip
        """From a list of per-shower ``(n_i, 4)`` point arrays."""
        counts = np.array([len(s) for s in showers], dtype=np.int64)
        points = np.concatenate(showers) if showers else np.zeros((0, 4), np.float32)
        return cls(np.asarray(incident_energies, np.float64).reshape(-1), np.asarray(directions, np.float64),
                   np.asarray(entry_points, np.float64), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   np.asarray(points, np.float32).reshape(-1, 4))  # fmt: skip


class PointCloudWriter:
    """Writes point clouds block by block into a new file that appears only when complete.

    Args:
        path: Output file; an existing one is kept unless ``force``.
        geometry: The planar calorimeter the points belong to.
        attrs: Root attributes to record (provenance).
    """

    def __init__(self, path: str | os.PathLike[str], geometry: PlanarCalorimeter, force: bool = False,
                 attrs: dict[str, object] | None = None, compression: str | None = "gzip") -> None:  # fmt: skip
        self.path = check_output_path(path, force)
        self.geometry = geometry
        self.force = force
        self.attrs = dict(attrs or {})
        self.compression = compression
        self.n_written = 0
        self._ctx = None
        self._file: h5py.File | None = None

    def __enter__(self) -> PointCloudWriter:
        self._ctx = atomic_output(self.path, force=self.force)
        self._file = h5py.File(self._ctx.__enter__(), "w")
        opts = {"compression": self.compression} if self.compression else {}
        for name, k in CONDITION_DATASETS.items():
            self._file.create_dataset(
                name, shape=(0, k), maxshape=(None, k), dtype=np.float64, chunks=(4096, k), **opts
            )
        offsets = self._file.create_dataset("offsets", shape=(1,), maxshape=(None,), dtype=np.int64, chunks=(8192,),
                                            **opts)  # fmt: skip
        offsets[0] = 0
        self._file.create_dataset("points", shape=(0, 4), maxshape=(None, 4), dtype=np.float32, chunks=(65536, 4),
                                  **opts)  # fmt: skip
        self._file.attrs.update({"format": FORMAT, "geometry": self.geometry.name, **self.attrs})
        return self

    def write(self, clouds: PointClouds) -> None:
        """Append a block of showers."""
        if self._file is None:
            raise RuntimeError("use PointCloudWriter inside a with-block")
        f = self._file
        n_old, m_old = f["incident_energies"].shape[0], f["points"].shape[0]
        n_new, m_new = n_old + len(clouds), m_old + len(clouds.points)
        for name, values in [("incident_energies", clouds.incident_energies.reshape(-1, 1)),
                             ("directions", clouds.directions), ("entry_points", clouds.entry_points)]:  # fmt: skip
            f[name].resize(n_new, axis=0)
            f[name][n_old:n_new] = values
        f["offsets"].resize(n_new + 1, axis=0)
        f["offsets"][n_old + 1 :] = clouds.offsets[1:] + m_old
        f["points"].resize(m_new, axis=0)
        f["points"][m_old:m_new] = clouds.points
        self.n_written += len(clouds)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        assert self._file is not None and self._ctx is not None
        self._file.close()
        self._ctx.__exit__(exc_type, exc, tb)


def write_point_clouds(path: str | os.PathLike[str], clouds: PointClouds, geometry: PlanarCalorimeter,
                       force: bool = False, attrs: dict[str, object] | None = None) -> Path:  # fmt: skip
    """Write an in-memory batch to a new file (see :class:`PointCloudWriter`)."""
    with PointCloudWriter(path, geometry, force=force, attrs=attrs) as writer:
        writer.write(clouds)
    return Path(path)


def is_point_cloud_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an HDF5 file of this layout (by its ``format`` attribute)."""
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


class PointCloudFile:
    """Reads a point-cloud file, checking its layout on opening.

    Raises:
        ShowerFileError: Naming the file, the dataset and what is wrong.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ShowerFileError(self.path, None, "no such file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise ShowerFileError(self.path, None, f"not a readable HDF5 file ({err})") from None
        try:
            self._check()
        except BaseException:
            self._file.close()
            raise

    def _check(self) -> None:
        f = self._file
        if f.attrs.get("format") != FORMAT:
            raise ShowerFileError(self.path, None, f"not a point-cloud file (its format attribute is "
                                                   f"{f.attrs.get('format')!r}, expected {FORMAT!r})")  # fmt: skip
        for name, k in {**CONDITION_DATASETS, "points": 4}.items():
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise ShowerFileError(self.path, name, "dataset missing")
            if f[name].ndim != 2 or f[name].shape[1] != k:
                raise ShowerFileError(self.path, name, f"shape {f[name].shape}, expected (N, {k})")
        n = f["incident_energies"].shape[0]
        for name in ("directions", "entry_points"):
            if f[name].shape[0] != n:
                raise ShowerFileError(self.path, name, f"{f[name].shape[0]} rows for {n} showers")
        if "offsets" not in f or f["offsets"].shape != (n + 1,):
            raise ShowerFileError(self.path, "offsets", f"missing or not of shape ({n + 1},) for {n} showers")
        ends = f["offsets"][[0, n]]
        if ends[0] != 0 or ends[1] != f["points"].shape[0]:
            raise ShowerFileError(self.path, "offsets", f"runs {ends[0]}..{ends[1]}, expected 0..{f['points'].shape[0]} "
                                                        "(the number of points)")  # fmt: skip
        name = str(f.attrs.get("geometry", ""))
        if name not in PLANAR_CALORIMETERS:
            raise ShowerFileError(
                self.path, None, f"geometry attribute {name!r}: not one of {sorted(PLANAR_CALORIMETERS)}"
            )
        self.geometry = PLANAR_CALORIMETERS[name]()

    @property
    def n_showers(self) -> int:
        return int(self._file["incident_energies"].shape[0])

    @property
    def n_points(self) -> int:
        return int(self._file["points"].shape[0])

    @property
    def attrs(self) -> dict[str, object]:
        return dict(self._file.attrs)

    def read(self, start: int = 0, stop: int | None = None) -> PointClouds:
        """Showers ``[start, stop)``."""
        stop = self.n_showers if stop is None else min(stop, self.n_showers)
        f = self._file
        offsets = f["offsets"][start : stop + 1].astype(np.int64)
        if np.any(np.diff(offsets) < 0):
            raise ShowerFileError(self.path, "offsets", f"decrease within showers {start}..{stop}")
        points = f["points"][offsets[0] : offsets[-1]]
        return PointClouds(f["incident_energies"][start:stop, 0].astype(np.float64), f["directions"][start:stop],
                           f["entry_points"][start:stop], offsets - offsets[0], points)  # fmt: skip

    def conditions(self, start: int = 0, stop: int | None = None) -> PointClouds:
        """The conditions of showers ``[start, stop)`` without their points (reading no point)."""
        stop = self.n_showers if stop is None else min(stop, self.n_showers)
        f = self._file
        return PointClouds(f["incident_energies"][start:stop, 0].astype(np.float64), f["directions"][start:stop],
                           f["entry_points"][start:stop], np.zeros(stop - start + 1, np.int64),
                           np.zeros((0, 4), np.float32))  # fmt: skip

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PointCloudFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_point_clouds(path: str | os.PathLike[str], start: int = 0, stop: int | None = None) -> PointClouds:
    with PointCloudFile(path) as f:
        return f.read(start, stop)


# --------------------------------------------------------------------------- projection onto cells
@dataclass
class CellHits:
    """Showers as energies in detector cells (sparse: only cells with energy).

    Attributes:
        offsets: ``(N + 1,)``: shower ``i``'s hits are ``[offsets[i], offsets[i + 1])``.
        layer, ix, iy: Each hit's layer and cell indices (cell ``ix`` spans
            ``[ix * cell_mm, (ix + 1) * cell_mm)`` in detector x).
        energy: MeV.
        local_xy: The cell centre in the shower's local frame, mm, ``(H, 2)``.
        cell_mm: Cell pitch.
    """

    offsets: np.ndarray
    layer: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    energy: np.ndarray
    local_xy: np.ndarray
    cell_mm: float

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def shower_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def above(self, threshold_mev: float) -> CellHits:
        """Only the hits with more than ``threshold_mev`` (the read-out's cut)."""
        keep = self.energy > threshold_mev
        counts = np.bincount(self.shower_index[keep], minlength=len(self))
        return CellHits(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), self.layer[keep], self.ix[keep],
                        self.iy[keep], self.energy[keep], self.local_xy[keep], self.cell_mm)  # fmt: skip


def sum_in_cells(shower: np.ndarray, layer: np.ndarray, xy: np.ndarray, energy: np.ndarray, shifts: np.ndarray,
                 cell_mm: float) -> CellHits:  # fmt: skip
    """Deposits summed in the square cells of pitch ``cell_mm`` that hold them: one hit per
    (shower, layer, cell), ordered by shower, layer, x and y.

    Args:
        shower, layer: Each deposit's shower and layer (int, ``(P,)``).
        xy: Detector positions, mm, ``(P, 2)``.
        energy: MeV, ``(P,)``.
        shifts: :meth:`PlanarCalorimeter.shifts` of the showers, ``(N, L, 2)`` (it gives ``N``, and
            the hits' local centres).
    """
    n_showers, n_layers = shifts.shape[:2]
    cells = np.floor(np.asarray(xy, np.float64) / cell_mm).astype(np.int64)
    low = cells.min(0) if len(cells) else np.zeros(2, np.int64)
    span = (cells.max(0) - low + 1) if len(cells) else np.ones(2, np.int64)
    key = ((shower * n_layers + layer) * span[0] + cells[:, 0] - low[0]) * span[1] + cells[:, 1] - low[1]
    unique, inverse = np.unique(key, return_inverse=True)
    summed = np.bincount(inverse, weights=np.asarray(energy, np.float64), minlength=len(unique))
    iy = unique % span[1] + low[1]
    rest = unique // span[1]
    ix = rest % span[0] + low[0]
    rest //= span[0]
    hit_layer, hit_shower = rest % n_layers, rest // n_layers
    centres = (np.stack([ix, iy], -1) + 0.5) * cell_mm
    local = centres - shifts[hit_shower, hit_layer]
    counts = np.bincount(hit_shower, minlength=n_showers)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return CellHits(offsets, hit_layer, ix, iy, summed, local, float(cell_mm))


def project(clouds: PointClouds, geometry: PlanarCalorimeter, cell_mm: float | None = None) -> CellHits:
    """Sum each shower's points into the detector's cells of pitch ``cell_mm`` (default the
    geometry's), back in the detector frame: the cells a real read-out of that pitch would have.

    Points falling outside the segment (``|x|, |y| >= half_width_mm``) are dropped; the energy of
    the points inside is conserved exactly (up to float rounding).
    """
    pts = clouds.points
    shower = clouds.shower_index
    layer = pts[:, LAYER].astype(np.int64)
    shifts = geometry.shifts(clouds.directions, clouds.entry_points)
    xy = geometry.to_global(pts[:, :2], layer, shifts[shower, layer])
    inside = geometry.contains(xy)
    return sum_in_cells(shower[inside], layer[inside], xy[inside], pts[inside, ENERGY], shifts,
                        float(cell_mm or geometry.cell_mm))  # fmt: skip


def inspect_point_clouds(path: str | os.PathLike[str], chunk: int = 2000) -> dict[str, object]:
    """What ``calo inspect`` says of a point-cloud file: counts, conditions, points and energy per layer.

    Read in chunks of ``chunk`` showers (bounded memory).
    """
    from calosurrogate.geometry.planar import angles_from_direction

    with PointCloudFile(path) as f:
        geometry, n = f.geometry, f.n_showers
        energies, angles, n_points, visible = [], [], [], []
        layer_energy = np.zeros(geometry.n_layers)
        for start in range(0, n, chunk):
            part = f.read(start, start + chunk)
            energies.append(part.incident_energies)
            angles.append(np.degrees(np.column_stack(angles_from_direction(part.directions))))
            n_points.append(part.n_points)
            visible.append(np.bincount(part.shower_index, weights=part.points[:, ENERGY], minlength=len(part)))
            layer_energy += np.bincount(part.points[:, LAYER].astype(np.int64), weights=part.points[:, ENERGY],
                                        minlength=geometry.n_layers)  # fmt: skip
        attrs = {k: (v.item() if hasattr(v, "item") else str(v)) for k, v in f.attrs.items()}
    energies, angles = np.concatenate(energies), np.concatenate(angles)
    n_points, visible = np.concatenate(n_points), np.concatenate(visible)
    return {
        "path": str(path), "format": FORMAT, "geometry": geometry.describe(), "n_showers": n,
        "n_points": int(n_points.sum()), "attrs": attrs,
        "incident_energy_gev": [float(energies.min() / 1e3), float(energies.max() / 1e3)],
        "angle_x_deg": [float(angles[:, 0].min()), float(angles[:, 0].max())],
        "angle_y_deg": [float(angles[:, 1].min()), float(angles[:, 1].max())],
        "points_per_shower": {"mean": float(n_points.mean()), "min": int(n_points.min()), "max": int(n_points.max())},
        "visible_over_incident": float(np.mean(visible / energies)),
        "mean_layer_energy_mev": (layer_energy / n).round(3).tolist(),
    }  # fmt: skip


def describe_point_clouds(summary: dict[str, object]) -> str:
    """:func:`inspect_point_clouds` as lines of text."""
    s = summary
    layers = s["mean_layer_energy_mev"]
    peak = int(np.argmax(layers))
    lines = [
        f"{s['path']}: {s['n_showers']} point-cloud showers, {s['n_points']} points ({s['format']})",
        f"geometry: {s['geometry']}",
        f"incident energy: {s['incident_energy_gev'][0]:.3g}-{s['incident_energy_gev'][1]:.3g} GeV; angles to the "
        f"normal: x {s['angle_x_deg'][0]:.1f}..{s['angle_x_deg'][1]:.1f}, y {s['angle_y_deg'][0]:.1f}.."
        f"{s['angle_y_deg'][1]:.1f} degrees",
        f"points per shower: mean {s['points_per_shower']['mean']:.0f} (min {s['points_per_shower']['min']}, "
        f"max {s['points_per_shower']['max']}); visible / incident energy {s['visible_over_incident']:.4f}",
        f"mean energy per layer peaks in layer {peak} ({layers[peak]:.1f} MeV)",
    ]  # fmt: skip
    lines += [f"{k}: {v}" for k, v in s["attrs"].items() if k not in ("format", "geometry")]
    return "\n".join(lines)
