"""The four CaloChallenge 2022 binnings, carried as facts (bin edges in mm).

The official XML files are not shipped; these descriptions reproduce them voxel for voxel
(the test suite compares them with the official files when those are at hand).
"""

from __future__ import annotations

from calosurrogate.geometry.crystal import PARAFLOW, CrystalGrid
from calosurrogate.geometry.cylindrical import CylindricalGeometry, CylindricalLayer, GeometryError

DS1_MIN_ENERGY_MEV = 1.0
DS23_MIN_ENERGY_MEV = 0.5e-3 / 0.033


def default_min_energy(geometry: CylindricalGeometry) -> float:
    """The dataset's read-out threshold in MeV, which the evaluation applies and surrogates sample
    through: 1 MeV for dataset 1 (and binnings of irregular layers, like it), 0.5 keV / 0.033 (the
    silicon threshold over the sampling fraction) for datasets 2 and 3."""
    own = getattr(geometry, "min_energy_mev", None)  # a crystal grid says its own
    if own is not None:
        return own
    return DS1_MIN_ENERGY_MEV if geometry.name.startswith("ds1") or not geometry.is_regular else DS23_MIN_ENERGY_MEV


def _layers(spec: list[tuple[int, list[float], int]]) -> tuple[CylindricalLayer, ...]:
    return tuple(
        CylindricalLayer(layer_id, tuple(float(e) for e in edges), n_alpha) for layer_id, edges, n_alpha in spec
    )


def _regular(name: str, n_layers: int, n_r: int, cell_mm: float, n_alpha: int) -> CylindricalGeometry:
    # Edges are multiples of the radial cell; rounding keeps them equal to the XML's decimals.
    edges = [round(i * cell_mm, 6) for i in range(n_r + 1)]
    return CylindricalGeometry(
        name=name,
        particle="electron",
        layers=_layers([(i, edges, n_alpha) for i in range(n_layers)]),
        n_xml_layers=n_layers,
        xml_attributes=(("pid", "11"),),
    )


def ds1_photons() -> CylindricalGeometry:
    """Dataset 1, photons: 368 voxels in ATLAS samplings 0, 1, 2, 3 and 12."""
    return CylindricalGeometry(
        name="ds1-photons",
        particle="photon",
        layers=_layers(
            [
                (0, [0, 5, 10, 30, 50, 100, 200, 400, 600], 1),
                (1, [0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200], 10),
                (2, [0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400], 10),
                (3, [0, 50, 100, 200, 400, 600], 1),
                (12, [0, 100, 200, 400, 1000, 2000], 1),
            ]
        ),
        n_xml_layers=24,
        xml_attributes=(("pid", "22"), ("etaMin", "0"), ("etaMax", "130")),
    )


def ds1_pions() -> CylindricalGeometry:
    """Dataset 1, charged pions: 533 voxels in ATLAS samplings 0-3 and tile layers 12-14."""
    return CylindricalGeometry(
        name="ds1-pions",
        particle="pion",
        layers=_layers(
            [
                (0, [0, 5, 10, 30, 50, 100, 200, 400, 600], 1),
                (1, [0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200], 10),
                (2, [0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400], 10),
                (3, [0, 50, 100, 200, 400, 600], 1),
                (12, [0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000], 10),
                (13, [0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000], 10),
                (14, [0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000], 1),
            ]
        ),
        n_xml_layers=24,
        xml_attributes=(("pid", "211"), ("etaMin", "0"), ("etaMax", "80")),
    )


def ds2() -> CylindricalGeometry:
    """Dataset 2: 45 layers x 16 alpha x 9 r = 6480 voxels, 4.65 mm radial cells."""
    return _regular("ds2", 45, 9, 4.65, 16)


def ds3() -> CylindricalGeometry:
    """Dataset 3: 45 layers x 50 alpha x 18 r = 40500 voxels, 2.325 mm radial cells."""
    return _regular("ds3", 45, 18, 2.325, 50)


BUILTIN_GEOMETRIES = {"ds1-photons": ds1_photons, "ds1-pions": ds1_pions, "ds2": ds2, "ds3": ds3}


def get_geometry(name_or_path: str) -> CylindricalGeometry | CrystalGrid:
    """A built-in geometry by name (ds1-photons, ds1-pions, ds2, ds3; paraflow's crystal window) or
    one read from an XML path."""
    if name_or_path in BUILTIN_GEOMETRIES:
        return BUILTIN_GEOMETRIES[name_or_path]()
    if name_or_path == PARAFLOW.name:
        return PARAFLOW
    if name_or_path.lower().endswith(".xml"):
        return CylindricalGeometry.from_xml(name_or_path)
    raise GeometryError(
        f"unknown geometry {name_or_path!r}: use one of {sorted([*BUILTIN_GEOMETRIES, PARAFLOW.name])} or a binning XML path"
    )


def geometries_with_voxels(n_voxels: int) -> list[str]:
    """Names of the built-in geometries (paraflow's crystal window among them) that have ``n_voxels`` voxels."""
    names = [name for name, make in BUILTIN_GEOMETRIES.items() if make().n_voxels == n_voxels]
    return names + [PARAFLOW.name] * (PARAFLOW.n_voxels == n_voxels)


def geometry_from_xml_string(xml: str, name: str) -> CylindricalGeometry | CrystalGrid:
    """The geometry a saved file carries as XML text: a crystal grid, or a cylindrical binning (the
    built-in one of that name when the binning is the same)."""
    import os
    import tempfile

    if xml.lstrip().startswith("<Crystals"):
        return CrystalGrid.from_xml_string(xml)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False) as tmp:
        tmp.write(xml)
    try:
        geometry = CylindricalGeometry.from_xml(tmp.name, name=name)
    finally:
        os.unlink(tmp.name)
    if name in BUILTIN_GEOMETRIES and BUILTIN_GEOMETRIES[name]().same_binning(geometry):
        return BUILTIN_GEOMETRIES[name]()
    return geometry


__all__ = [
    "BUILTIN_GEOMETRIES",
    "ds1_photons",
    "ds1_pions",
    "ds2",
    "ds3",
    "geometries_with_voxels",
    "geometry_from_xml_string",
    "get_geometry",
]
