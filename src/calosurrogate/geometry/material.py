"""Longitudinal material descriptions: what a shower crosses, in radiation lengths.

A cylindrical binning says where voxels are transversely; the simulator also needs how deep
each read-out layer sits and what it is made of. Constants are the PDG's (Review of Particle
Physics, "Atomic and nuclear properties of materials"); effective values of a sampling
structure follow the usual weighting by thickness (X0) and by X0 (Moliere radius).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from calosurrogate.geometry.cylindrical import GeometryError


@dataclass(frozen=True)
class Material:
    """A (possibly effective) calorimeter material.

    Attributes:
        name: Human-readable name.
        z_eff: Effective atomic number (enters the GFlash parametrization).
        radiation_length_mm: X0 in mm.
        moliere_radius_mm: R_M in mm.
        critical_energy_mev: E_c in MeV.
    """

    name: str
    z_eff: float
    radiation_length_mm: float
    moliere_radius_mm: float
    critical_energy_mev: float


TUNGSTEN = Material("tungsten", 74.0, 3.504, 9.327, 7.97)
SILICON = Material("silicon", 14.0, 93.70, 48.82, 40.19)
LEAD = Material("lead", 82.0, 5.612, 16.02, 7.43)
LIQUID_ARGON = Material("liquid argon", 18.0, 140.0, 90.43, 32.84)
IRON = Material("iron", 26.0, 17.57, 17.19, 21.68)
# Z weighted by mass fraction (Pb 0.455, W 0.404, O 0.141)
LEAD_TUNGSTATE = Material("lead tungstate PbWO4", 68.3, 8.903, 19.59, 9.64)


def sampling_mixture(name: str, parts: list[tuple[Material, float]]) -> Material:
    """Effective material of a repeated stack of ``(material, thickness_mm)`` parts.

    1/X0 and 1/R_M (both lengths) are the thickness-fraction-weighted means of the parts'
    (the mass-fraction rule of the PDG, converted to lengths); Z and E_c are weighted by each
    part's share of the radiation lengths crossed.
    """
    thickness = sum(t for _, t in parts)
    inv_x0 = sum(t / m.radiation_length_mm for m, t in parts) / thickness
    x0 = 1.0 / inv_x0
    weights = [(t / m.radiation_length_mm) / (thickness * inv_x0) for m, t in parts]
    inv_rm = sum(t / m.moliere_radius_mm for m, t in parts) / thickness
    z = sum(w * m.z_eff for (m, _), w in zip(parts, weights, strict=True))
    ec = sum(w * m.critical_energy_mev for (m, _), w in zip(parts, weights, strict=True))
    return Material(name, z, x0, 1.0 / inv_rm, ec)


@dataclass(frozen=True)
class LayerStack:
    """Depth of each read-out layer along the shower axis.

    Attributes:
        material: The effective material the shower develops in.
        boundaries_x0: Layer boundaries in X0 from the front face, shape ``(n_layers, 2)``;
            material before the first layer or between layers is passive (its energy is lost).
        sampling_fraction: Visible fraction of the deposited energy in the active medium.
    """

    material: Material
    boundaries_x0: tuple[tuple[float, float], ...]
    sampling_fraction: float = 1.0

    def __post_init__(self) -> None:
        b = np.asarray(self.boundaries_x0, dtype=float)
        if b.ndim != 2 or b.shape[1] != 2 or np.any(b[:, 1] <= b[:, 0]) or np.any(b[1:, 0] < b[:-1, 1] - 1e-9):
            raise GeometryError("layer boundaries must be ordered, non-overlapping (start, end) pairs in X0")

    @property
    def n_layers(self) -> int:
        """Number of read-out layers."""
        return len(self.boundaries_x0)

    @property
    def starts(self) -> np.ndarray:
        """Front of each layer in X0, shape ``(n_layers,)``."""
        return np.asarray(self.boundaries_x0, dtype=float)[:, 0]

    @property
    def ends(self) -> np.ndarray:
        """Back of each layer in X0, shape ``(n_layers,)``."""
        return np.asarray(self.boundaries_x0, dtype=float)[:, 1]

    @property
    def centres(self) -> np.ndarray:
        """Middle of each layer in X0, shape ``(n_layers,)``."""
        return 0.5 * (self.starts + self.ends)

    @classmethod
    def uniform(cls, material: Material, n_layers: int, layer_x0: float, sampling_fraction: float = 1.0) -> LayerStack:
        """``n_layers`` contiguous layers of ``layer_x0`` each, starting at the front face."""
        edges = np.arange(n_layers + 1) * layer_x0
        return cls(material, tuple(itertools.pairwise(edges)), sampling_fraction)
