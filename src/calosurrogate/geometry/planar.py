"""Highly granular planar calorimeters read out in square cells (the ILD-like SiW ECAL of CaloClouds).

Showers in such a detector are stored as point clouds in a *local frame*: each layer's
coordinates shifted so that the photon's straight line crosses every layer at ``(0, 0)``. The
shift of layer ``l`` follows from the layer's depth ``z_l`` and the photon's direction ``d`` and
entry point ``(x_0, y_0)`` on the front face::

    shift_l = (x_0 + z_l d_x / d_z,  y_0 + z_l d_y / d_z)
    local = global - shift_l

so that one shower library serves every position and angle of a regular (gapless, unstaggered)
barrel segment (CaloClouds3, arXiv:2511.01460; CaloClouds II, arXiv:2309.05704).

Lengths in mm, energies in MeV, angles in radians unless a name says otherwise. Coordinates:
``z`` along the layer normal from the front face, ``x, y`` in the layer planes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calosurrogate.geometry.cylindrical import GeometryError
from calosurrogate.geometry.material import SILICON, TUNGSTEN, Material, sampling_mixture

# Minimum-ionising energy loss in MeV/mm (PDG "Atomic and nuclear properties of materials").
MIP_DEDX_MEV_PER_MM = {"tungsten": 2.210, "silicon": 0.3876}


@dataclass(frozen=True)
class PlanarCalorimeter:
    """A stack of absorber plates, each followed by a silicon sensor of square cells.

    Args:
        name: Short name (``ild-ecal``).
        absorbers_mm: Thickness of the absorber in front of each sensitive layer, shape ``(n_layers,)``.
        silicon_mm: Sensor thickness.
        gap_mm: Per layer, what else the layer holds (PCB, carbon fibre, air): depth without
            radiation lengths worth modelling.
        cell_mm: Cell pitch of the read-out.
        sub_cells: Points are binned at ``cell_mm / sub_cells`` (sub-cell granularity), so any
            cell size that is a multiple of that pitch is an exact projection.
        half_width_mm: The segment spans ``[-half_width_mm, half_width_mm]`` in x and y.
        max_angle: Photons arrive with both angles to the layer normal (``atan(d_x/d_z)`` and
            ``atan(d_y/d_z)``) uniform in ``[-max_angle, max_angle]``.
        mip_mev: Most probable energy of a minimum-ionising particle in one sensor (the
            unit of the half-MIP cut).
        absorber: Absorber material.
    """

    name: str
    absorbers_mm: tuple[float, ...]
    silicon_mm: float = 0.5
    gap_mm: float = 1.5
    cell_mm: float = 5.0
    sub_cells: int = 4
    half_width_mm: float = 300.0
    max_angle: float = np.radians(30.0)
    mip_mev: float = 0.15
    absorber: Material = TUNGSTEN

    def __post_init__(self) -> None:
        if not self.absorbers_mm or min(self.absorbers_mm) <= 0 or self.silicon_mm <= 0 or self.cell_mm <= 0:
            raise GeometryError(f"planar calorimeter {self.name!r}: thicknesses and the cell pitch must be positive")
        if self.sub_cells < 1 or not 0 <= self.max_angle < np.pi / 2:
            raise GeometryError(f"planar calorimeter {self.name!r}: sub_cells >= 1 and 0 <= max_angle < 90 degrees")

    @property
    def n_layers(self) -> int:
        return len(self.absorbers_mm)

    @property
    def sub_cell_mm(self) -> float:
        return self.cell_mm / self.sub_cells

    @cached_property
    def layer_z(self) -> np.ndarray:
        """Depth of each sensor's mid-plane from the front face (mm), shape ``(n_layers,)``."""
        pitch = np.asarray(self.absorbers_mm) + self.silicon_mm + self.gap_mm
        return np.cumsum(pitch) - self.gap_mm - self.silicon_mm / 2

    @cached_property
    def layer_x0(self) -> np.ndarray:
        """Radiation lengths from the front face to the back of each sensor, shape ``(n_layers,)``
        (at normal incidence; a photon at angle ``theta`` crosses ``1/cos(theta)`` times more)."""
        per_layer = np.asarray(self.absorbers_mm) / self.absorber.radiation_length_mm
        return np.cumsum(per_layer + self.silicon_mm / SILICON.radiation_length_mm)

    @cached_property
    def sampling_fractions(self) -> np.ndarray:
        """Each layer's share of a minimum-ionising particle's energy loss that its sensor sees."""
        silicon = MIP_DEDX_MEV_PER_MM["silicon"] * self.silicon_mm
        absorber = MIP_DEDX_MEV_PER_MM[self.absorber.name] * np.asarray(self.absorbers_mm)
        return silicon / (silicon + absorber)

    @cached_property
    def material(self) -> Material:
        """The effective material of the thinnest layers (the shower's first radiation lengths)."""
        return sampling_mixture(f"{self.name} mixture", [(self.absorber, min(self.absorbers_mm)),
                                                          (SILICON, self.silicon_mm)])  # fmt: skip

    # ------------------------------------------------------------------ the local frame
    def shifts(self, directions: np.ndarray, entry_points: np.ndarray) -> np.ndarray:
        """Where the photon's line crosses each layer (mm): ``(B, n_layers, 2)``.

        Args:
            directions: Unit vectors, ``(B, 3)`` with ``d_z > 0``.
            entry_points: ``(x_0, y_0)`` on the front face, ``(B, 2)``.
        """
        directions = np.asarray(directions, dtype=np.float64)
        slope = directions[:, :2] / directions[:, 2:3]
        return np.asarray(entry_points, dtype=np.float64)[:, None, :] + self.layer_z[None, :, None] * slope[:, None, :]

    def to_local(self, xy: np.ndarray, layer: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """Detector ``(x, y)`` of points in the layers ``layer`` (int, ``(P,)``) to the local frame.

        ``shifts``: :meth:`shifts` of each point's shower, ``(P, n_layers, 2)``, or already
        gathered per point, ``(P, 2)``.
        """
        return np.asarray(xy, dtype=np.float64) - _per_point(shifts, layer)

    def to_global(self, xy: np.ndarray, layer: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_local`."""
        return np.asarray(xy, dtype=np.float64) + _per_point(shifts, layer)

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Whether detector positions ``(..., 2)`` fall on the segment's sensors."""
        return np.all(np.abs(np.asarray(xy)) < self.half_width_mm, axis=-1)

    def describe(self) -> str:
        thin, thick = min(self.absorbers_mm), max(self.absorbers_mm)
        return (f"{self.name}: {self.n_layers} SiW layers ({self.absorbers_mm.count(thin)} x {thin} mm "
                f"+ {self.absorbers_mm.count(thick)} x {thick} mm {self.absorber.name}, {self.silicon_mm} mm Si), "
                f"{self.cell_mm} x {self.cell_mm} mm^2 cells (points at {self.sub_cell_mm:g} mm), "
                f"{self.layer_x0[-1]:.1f} X0, angles up to {np.degrees(self.max_angle):.0f} degrees")  # fmt: skip


def _per_point(shifts: np.ndarray, layer: np.ndarray) -> np.ndarray:
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.ndim == 2:
        return shifts
    return shifts[np.arange(len(shifts)), np.asarray(layer, dtype=np.int64)]


def ild_ecal() -> PlanarCalorimeter:
    """An ILD-like SiW ECAL segment: 20 layers behind 2.1 mm of tungsten (0.6 X0), then 10 behind
    4.2 mm (1.2 X0), 0.5 mm silicon sensors of 5 x 5 mm^2 cells; photons up to 30 degrees off the
    normal in both angles."""
    return PlanarCalorimeter("ild-ecal", absorbers_mm=(2.1,) * 20 + (4.2,) * 10)


PLANAR_CALORIMETERS = {"ild-ecal": ild_ecal}


def direction_from_angles(theta_x: np.ndarray, theta_y: np.ndarray) -> np.ndarray:
    """Unit vectors ``(B, 3)`` whose angles to the layer normal are ``theta_x`` (in the x-z plane)
    and ``theta_y`` (in the y-z plane)."""
    raw = np.stack([np.tan(theta_x), np.tan(theta_y), np.ones_like(np.asarray(theta_x, dtype=np.float64))], -1)
    return raw / np.linalg.norm(raw, axis=-1, keepdims=True)


def angles_from_direction(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(theta_x, theta_y)`` of unit vectors ``(B, 3)``; the inverse of :func:`direction_from_angles`."""
    directions = np.asarray(directions, dtype=np.float64)
    return np.arctan2(directions[:, 0], directions[:, 2]), np.arctan2(directions[:, 1], directions[:, 2])
