"""Detector geometries: cylindrical CaloChallenge binnings, crystal grids, highly granular planar stacks, material stacks."""

from calosurrogate.geometry.builtin import (
    BUILTIN_GEOMETRIES,
    default_min_energy,
    ds1_photons,
    ds1_pions,
    ds2,
    ds3,
    geometries_with_voxels,
    geometry_from_xml_string,
    get_geometry,
)
from calosurrogate.geometry.crystal import CrystalGrid
from calosurrogate.geometry.cylindrical import CylindricalGeometry, CylindricalLayer, GeometryError
from calosurrogate.geometry.material import LayerStack, Material, sampling_mixture
from calosurrogate.geometry.planar import PLANAR_CALORIMETERS, PlanarCalorimeter, ild_ecal

__all__ = [
    "BUILTIN_GEOMETRIES",
    "PLANAR_CALORIMETERS",
    "CrystalGrid",
    "CylindricalGeometry",
    "CylindricalLayer",
    "GeometryError",
    "LayerStack",
    "Material",
    "PlanarCalorimeter",
    "default_min_energy",
    "ds1_photons",
    "ds1_pions",
    "ds2",
    "ds3",
    "geometries_with_voxels",
    "geometry_from_xml_string",
    "get_geometry",
    "ild_ecal",
    "sampling_mixture",
]
