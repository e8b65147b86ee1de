"""Cylindrical CaloChallenge binnings.

A CaloChallenge shower is a flat vector of voxel energies (MeV). Voxels are ordered
``(layer, alpha, r)`` with ``r`` fastest; each relevant layer is one contiguous block, in
the order of the binning XML. Layers may differ in their radial edges and alpha bins
(dataset 1) or all be alike (datasets 2 and 3).

Voxel centres follow the community's reference evaluation (CaloChallenge 2022,
arXiv:2410.21611): ``r_mid`` are the midpoints of the radial edges, ``alpha_mid`` the
midpoints of ``linspace(-pi, pi, n_alpha + 1)`` (``alpha = 0`` for layers with a single
alpha bin), ``eta = r_mid * cos(alpha_mid)`` and ``phi = r_mid * sin(alpha_mid)`` in mm.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np


class GeometryError(ValueError):
    """A binning description is malformed or does not fit the data it is used with."""


@dataclass(frozen=True)
class CylindricalLayer:
    """One relevant (read-out) layer of a cylindrical binning.

    Attributes:
        layer_id: The layer's id in the binning XML (ATLAS sampling number for dataset 1).
        r_edges: Radial bin edges in mm, increasing, starting at 0; shape ``(n_r + 1,)``.
        n_alpha: Number of equal angular bins spanning ``[-pi, pi)``.
    """

    layer_id: int
    r_edges: tuple[float, ...]
    n_alpha: int

    def __post_init__(self) -> None:
        edges = np.asarray(self.r_edges, dtype=float)
        if edges.ndim != 1 or len(edges) < 2:
            raise GeometryError(f"layer {self.layer_id}: needs at least two radial edges, got {self.r_edges}")
        if np.any(np.diff(edges) <= 0):
            raise GeometryError(f"layer {self.layer_id}: radial edges must increase, got {self.r_edges}")
        if self.n_alpha < 1:
            raise GeometryError(f"layer {self.layer_id}: n_alpha must be >= 1, got {self.n_alpha}")

    @property
    def n_r(self) -> int:
        """Number of radial bins."""
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        """Number of voxels in this layer, ``n_alpha * n_r``."""
        return self.n_alpha * self.n_r

    @property
    def r_mid(self) -> np.ndarray:
        """Radial bin midpoints in mm, shape ``(n_r,)``."""
        edges = np.asarray(self.r_edges, dtype=float)
        return 0.5 * (edges[1:] + edges[:-1])

    @property
    def alpha_mid(self) -> np.ndarray:
        """Angular bin midpoints in radians, shape ``(n_alpha,)``; 0 for a single bin."""
        if self.n_alpha == 1:
            return np.zeros(1)
        edges = np.linspace(-np.pi, np.pi, self.n_alpha + 1)
        return 0.5 * (edges[1:] + edges[:-1])

    @property
    def voxel_areas(self) -> np.ndarray:
        """Transverse area of each voxel in mm^2, shape ``(n_alpha * n_r,)``, r fastest."""
        edges = np.asarray(self.r_edges, dtype=float)
        ring = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2) / self.n_alpha
        return np.tile(ring, self.n_alpha)


@dataclass(frozen=True)
class CylindricalGeometry:
    """A CaloChallenge cylindrical binning: the relevant layers and their voxels.

    Args:
        name: Short name, e.g. ``"ds2"``.
        particle: The ``name`` attribute of the XML ``Bin`` element (photon, pion, electron).
        layers: The relevant layers in voxel order.
        n_xml_layers: How many ``Layer`` entries the XML lists (absent layers included), so
            that a written file lists the same ids as the official one.
        xml_attributes: Other attributes of the ``Bin`` element (``pid``, ``etaMin``...),
            kept for a faithful round trip.
    """

    name: str
    particle: str
    layers: tuple[CylindricalLayer, ...]
    n_xml_layers: int | None = None
    xml_attributes: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.layers:
            raise GeometryError(f"geometry {self.name!r} has no relevant layer")
        ids = [layer.layer_id for layer in self.layers]
        if len(set(ids)) != len(ids):
            raise GeometryError(f"geometry {self.name!r} repeats a layer id: {ids}")

    # ------------------------------------------------------------------ sizes
    @property
    def n_layers(self) -> int:
        """Number of relevant layers."""
        return len(self.layers)

    @property
    def layer_ids(self) -> list[int]:
        """The XML ids of the relevant layers, in voxel order."""
        return [layer.layer_id for layer in self.layers]

    @cached_property
    def n_voxels(self) -> int:
        """Total number of voxels."""
        return int(sum(layer.n_voxels for layer in self.layers))

    @cached_property
    def layer_offsets(self) -> np.ndarray:
        """Index of each layer's first voxel, plus the total, shape ``(n_layers + 1,)``."""
        return np.concatenate([[0], np.cumsum([layer.n_voxels for layer in self.layers])]).astype(int)

    def layer_slice(self, index: int) -> slice:
        """The voxel slice of relevant layer number ``index`` (0-based position, not XML id)."""
        return slice(int(self.layer_offsets[index]), int(self.layer_offsets[index + 1]))

    @property
    def is_regular(self) -> bool:
        """True when every layer has the same radial edges and alpha bins (ds2, ds3)."""
        first = self.layers[0]
        return all(layer.r_edges == first.r_edges and layer.n_alpha == first.n_alpha for layer in self.layers)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_layers, n_alpha, n_r)`` of a regular geometry.

        Raises:
            GeometryError: If the layers differ (dataset 1).
        """
        if not self.is_regular:
            raise GeometryError(f"geometry {self.name!r} is irregular: its layers differ in binning")
        return (self.n_layers, self.layers[0].n_alpha, self.layers[0].n_r)

    # ------------------------------------------------------ voxel <-> indices
    @cached_property
    def voxel_layer(self) -> np.ndarray:
        """Position (0-based) of each voxel's layer, shape ``(n_voxels,)``."""
        return np.repeat(np.arange(self.n_layers), [layer.n_voxels for layer in self.layers])

    @cached_property
    def voxel_alpha(self) -> np.ndarray:
        """Alpha bin index of each voxel, shape ``(n_voxels,)``."""
        return np.concatenate([np.repeat(np.arange(layer.n_alpha), layer.n_r) for layer in self.layers])

    @cached_property
    def voxel_r(self) -> np.ndarray:
        """Radial bin index of each voxel, shape ``(n_voxels,)``."""
        return np.concatenate([np.tile(np.arange(layer.n_r), layer.n_alpha) for layer in self.layers])

    def voxel_index(self, layer: int | np.ndarray, alpha: int | np.ndarray, r: int | np.ndarray) -> np.ndarray:
        """Flat voxel index of ``(layer position, alpha bin, r bin)``; inverse of the three maps above."""
        layer = np.asarray(layer)
        alpha = np.asarray(alpha)
        r = np.asarray(r)
        n_r = np.array([lay.n_r for lay in self.layers])[layer]
        n_alpha = np.array([lay.n_alpha for lay in self.layers])[layer]
        if np.any((alpha < 0) | (alpha >= n_alpha) | (r < 0) | (r >= n_r)):
            raise GeometryError("alpha or r index outside its layer")
        return self.layer_offsets[layer] + alpha * n_r + r

    # -------------------------------------------------------- voxel centres
    @cached_property
    def r_mid(self) -> np.ndarray:
        """Radial midpoint of each voxel in mm, shape ``(n_voxels,)``."""
        return np.concatenate([np.tile(layer.r_mid, layer.n_alpha) for layer in self.layers])

    @cached_property
    def alpha_mid(self) -> np.ndarray:
        """Angular midpoint of each voxel in radians, shape ``(n_voxels,)``."""
        return np.concatenate([np.repeat(layer.alpha_mid, layer.n_r) for layer in self.layers])

    @cached_property
    def eta(self) -> np.ndarray:
        """Voxel centre ``r_mid * cos(alpha_mid)`` in mm, shape ``(n_voxels,)``."""
        return self.r_mid * np.cos(self.alpha_mid)

    @cached_property
    def phi(self) -> np.ndarray:
        """Voxel centre ``r_mid * sin(alpha_mid)`` in mm, shape ``(n_voxels,)``."""
        return self.r_mid * np.sin(self.alpha_mid)

    @cached_property
    def voxel_areas(self) -> np.ndarray:
        """Transverse area of each voxel in mm^2, shape ``(n_voxels,)``."""
        return np.concatenate([layer.voxel_areas for layer in self.layers])

    def layer_has_alpha_bins(self, index: int) -> bool:
        """Whether relevant layer ``index`` is binned in alpha (only then EC/width in eta, phi mean something)."""
        return self.layers[index].n_alpha > 1

    def to_images(self, showers: np.ndarray) -> np.ndarray:
        """Reshape flat showers ``(N, n_voxels)`` of a regular geometry to ``(N, layers, alpha, r)``."""
        return np.asarray(showers).reshape(-1, *self.shape)

    # ------------------------------------------------------------------ XML
    @classmethod
    def from_xml(cls, path: str | os.PathLike[str], name: str | None = None) -> CylindricalGeometry:
        """Read an official CaloChallenge binning XML file.

        Args:
            path: The XML file.
            name: Name to give the geometry; defaults to the file's stem.

        Raises:
            GeometryError: If the file is not a binning XML of the expected form; the message
                names the file and the element at fault.
        """
        path = Path(path)
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as err:
            raise GeometryError(f"{path}: not a readable binning XML file ({err})") from err
        bins = root.findall("Bin")
        if root.tag != "Bins" or len(bins) != 1:
            raise GeometryError(f"{path}: expected <Bins> with exactly one <Bin>, found <{root.tag}> with {len(bins)}")
        bin_el = bins[0]
        layers = []
        xml_layers = bin_el.findall("Layer")
        for layer_el in xml_layers:
            try:
                layer_id = int(layer_el.attrib["id"])
                edges = tuple(float(x) for x in layer_el.attrib["r_edges"].split(","))
                n_alpha = int(layer_el.attrib.get("n_bin_alpha", "1"))
            except (KeyError, ValueError) as err:
                raise GeometryError(f"{path}: malformed <Layer> element {layer_el.attrib} ({err})") from err
            if len(edges) < 2:
                continue  # r_edges="0": the layer is absent from the data
            try:
                layers.append(CylindricalLayer(layer_id, edges, n_alpha))
            except GeometryError as err:
                raise GeometryError(f"{path}: {err}") from err
        attrs = tuple((k, v) for k, v in bin_el.attrib.items() if k != "name")
        return cls(
            name=name or path.stem,
            particle=bin_el.attrib.get("name", ""),
            layers=tuple(layers),
            n_xml_layers=len(xml_layers),
            xml_attributes=attrs,
        )

    def to_xml_string(self) -> str:
        """The binning in the official XML format (absent layers written with ``r_edges="0"``)."""
        root = ET.Element("Bins")
        bin_el = ET.SubElement(root, "Bin", {**dict(self.xml_attributes), "name": self.particle})
        by_id = {layer.layer_id: layer for layer in self.layers}
        n_entries = max(self.n_xml_layers or 0, max(by_id) + 1)
        for layer_id in range(n_entries):
            layer = by_id.get(layer_id)
            if layer is None:
                attrs = {"id": str(layer_id), "r_edges": "0", "n_bin_alpha": "1"}
            else:
                edges = ",".join(_format_edge(e) for e in layer.r_edges)
                attrs = {"id": str(layer_id), "r_edges": edges, "n_bin_alpha": str(layer.n_alpha)}
            ET.SubElement(bin_el, "Layer", attrs)
        ET.indent(root, space="   ")
        return ET.tostring(root, encoding="unicode") + "\n"

    def to_xml(self, path: str | os.PathLike[str], force: bool = False) -> Path:
        """Write the binning XML file (atomically; refuses to overwrite unless ``force``)."""
        from calosurrogate._io import atomic_output

        with atomic_output(path, force=force) as tmp:
            Path(tmp).write_text(self.to_xml_string())
        return Path(path)

    def same_binning(self, other: CylindricalGeometry) -> bool:
        """True when both describe the same voxels (names and XML decoration aside)."""
        return self.layers == other.layers


def _format_edge(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
