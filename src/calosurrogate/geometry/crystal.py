"""Rectangular crystal grids (homogeneous crystal calorimeters, as studied with ParaFlow).

A crystal image is ``(n_x, n_y)`` crystals, flattened row-major (y fastest). Distances are
in crystal widths unless a width in mm is given.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calosurrogate.geometry.cylindrical import GeometryError


@dataclass(frozen=True)
class CrystalGrid:
    """A square grid of identical crystals seen face-on.

    Args:
        name: Short name.
        n_x: Crystals along x.
        n_y: Crystals along y.
        crystal_width_mm: Front-face width of one crystal in mm.
        crystal_length_x0: Crystal length in radiation lengths (longitudinal containment).
    """

    name: str
    n_x: int
    n_y: int
    crystal_width_mm: float = 22.0
    crystal_length_x0: float = 25.0

    def __post_init__(self) -> None:
        if self.n_x < 1 or self.n_y < 1 or self.crystal_width_mm <= 0:
            raise GeometryError(f"crystal grid {self.name!r}: sizes must be positive")

    @property
    def n_voxels(self) -> int:
        """Number of crystals."""
        return self.n_x * self.n_y

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_x, n_y)``."""
        return (self.n_x, self.n_y)

    @cached_property
    def centres(self) -> np.ndarray:
        """Crystal centres in crystal widths, origin at the grid centre, shape ``(n_voxels, 2)``."""
        x = np.arange(self.n_x) - (self.n_x - 1) / 2
        y = np.arange(self.n_y) - (self.n_y - 1) / 2
        xx, yy = np.meshgrid(x, y, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel()], axis=1)

    def index(self, ix: int | np.ndarray, iy: int | np.ndarray) -> np.ndarray:
        """Flat index of crystal ``(ix, iy)``."""
        ix, iy = np.asarray(ix), np.asarray(iy)
        if np.any((ix < 0) | (ix >= self.n_x) | (iy < 0) | (iy >= self.n_y)):
            raise GeometryError("crystal index outside the grid")
        return ix * self.n_y + iy

    def to_images(self, energies: np.ndarray) -> np.ndarray:
        """Reshape ``(N, n_voxels)`` crystal energies to ``(N, n_x, n_y)`` images."""
        return np.asarray(energies).reshape(-1, self.n_x, self.n_y)

    # What the surrogate families ask of a geometry: a crystal image is one read-out layer.
    particle = "photon"
    n_layers = 1
    is_regular = True
    # ParaFlow's dequantisation noise is U(0, 20 keV): deposits below it are not resolved
    min_energy_mev = 0.02

    @property
    def layers(self) -> tuple[CrystalGrid, ...]:
        """The one layer (the grid itself: ``n_voxels``)."""
        return (self,)

    @property
    def layer_offsets(self) -> np.ndarray:
        """``[0, n_voxels]``."""
        return np.array([0, self.n_voxels])

    def layer_slice(self, index: int) -> slice:
        """All crystals (index 0)."""
        if index != 0:
            raise GeometryError(f"crystal grid {self.name!r} has one layer")
        return slice(0, self.n_voxels)

    def to_xml_string(self) -> str:
        """The grid as a one-element XML (saved in model files)."""
        root = ET.Element("Crystals", {"name": self.name, "n_x": str(self.n_x), "n_y": str(self.n_y),
                                       "width_mm": repr(self.crystal_width_mm), "length_x0": repr(self.crystal_length_x0)})  # fmt: skip
        return ET.tostring(root, encoding="unicode")

    @classmethod
    def from_xml_string(cls, text: str) -> CrystalGrid:
        """Read ``to_xml_string``'s form; a malformed one is named."""
        try:
            root = ET.fromstring(text)
            if root.tag != "Crystals":
                raise ValueError(f"root element {root.tag!r}, expected 'Crystals'")
            return cls(root.attrib["name"], int(root.attrib["n_x"]), int(root.attrib["n_y"]),
                       float(root.attrib["width_mm"]), float(root.attrib["length_x0"]))  # fmt: skip
        except (ET.ParseError, KeyError, ValueError) as error:
            raise GeometryError(f"not a crystal-grid description ({error})") from error

    def same_binning(self, other: object) -> bool:
        """True for a grid of the same crystals."""
        return isinstance(other, CrystalGrid) and (self.n_x, self.n_y, self.crystal_width_mm) == (
            other.n_x, other.n_y, other.crystal_width_mm)  # fmt: skip


# ParaFlow's CMS-like calorimeter: PbWO4 crystals 22 x 22 mm^2 at the front, 230 mm (25.8 X0) long;
# files store the 8 x 16 window (x by y) around the shower, the field spreading it along y
PARAFLOW_FULL = CrystalGrid("paraflow-full", 24, 24, 22.0, 230.0 / 8.903)
PARAFLOW = CrystalGrid("paraflow", 8, 16, 22.0, 230.0 / 8.903)
