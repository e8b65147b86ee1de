from __future__ import annotations

import numpy as np
import pytest

from calosurrogate.geometry import (
    CrystalGrid,
    CylindricalGeometry,
    CylindricalLayer,
    GeometryError,
    LayerStack,
    get_geometry,
    sampling_mixture,
)
from calosurrogate.geometry.material import SILICON, TUNGSTEN

OFFICIAL = {
    "ds1-photons": "binning_dataset_1_photons.xml",
    "ds1-pions": "binning_dataset_1_pions.xml",
    "ds2": "binning_dataset_2.xml",
    "ds3": "binning_dataset_3.xml",
}


@pytest.mark.parametrize(
    ("name", "n_voxels"), [("ds1-photons", 368), ("ds1-pions", 533), ("ds2", 6480), ("ds3", 40500)]
)
def test_builtin_voxel_counts(name: str, n_voxels: int) -> None:
    geometry = get_geometry(name)
    assert geometry.n_voxels == n_voxels
    assert geometry.layer_offsets[-1] == n_voxels
    assert len(geometry.r_mid) == len(geometry.eta) == len(geometry.voxel_layer) == n_voxels


def test_regular_shapes() -> None:
    assert get_geometry("ds2").shape == (45, 16, 9)
    assert get_geometry("ds3").shape == (45, 50, 18)
    with pytest.raises(GeometryError, match="irregular"):
        _ = get_geometry("ds1-photons").shape


@pytest.mark.parametrize("name", ["ds1-photons", "ds1-pions", "ds2"])
def test_voxel_index_round_trip(name: str) -> None:
    g = get_geometry(name)
    flat = g.voxel_index(g.voxel_layer, g.voxel_alpha, g.voxel_r)
    np.testing.assert_array_equal(flat, np.arange(g.n_voxels))
    with pytest.raises(GeometryError):
        g.voxel_index(0, g.layers[0].n_alpha, 0)


def test_voxel_centres_by_hand() -> None:
    # One layer, 4 alpha bins, edges 0, 2, 6 mm: alpha midpoints -3pi/4, -pi/4, pi/4, 3pi/4, r_mid 1 and 4.
    g = CylindricalGeometry("toy", "electron", (CylindricalLayer(0, (0.0, 2.0, 6.0), 4),))
    r_expected = np.array([1, 4, 1, 4, 1, 4, 1, 4], dtype=float)
    alpha_expected = np.repeat([-3 * np.pi / 4, -np.pi / 4, np.pi / 4, 3 * np.pi / 4], 2)
    np.testing.assert_allclose(g.r_mid, r_expected)
    np.testing.assert_allclose(g.alpha_mid, alpha_expected)
    np.testing.assert_allclose(g.eta, r_expected * np.cos(alpha_expected))
    np.testing.assert_allclose(g.phi, r_expected * np.sin(alpha_expected))
    np.testing.assert_allclose(g.voxel_areas.sum(), np.pi * 36)


def test_single_alpha_bin_has_alpha_zero() -> None:
    g = get_geometry("ds1-photons")
    layer0 = g.layer_slice(0)
    np.testing.assert_array_equal(g.alpha_mid[layer0], 0.0)
    np.testing.assert_allclose(g.eta[layer0], g.r_mid[layer0])
    assert not g.layer_has_alpha_bins(0) and g.layer_has_alpha_bins(1)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_xml_round_trip(name: str, tmp_path) -> None:
    g = get_geometry(name)
    path = g.to_xml(tmp_path / "b.xml")
    back = CylindricalGeometry.from_xml(path, name=name)
    assert back.same_binning(g)
    assert back.particle == g.particle and back.n_xml_layers == g.n_xml_layers
    assert back.to_xml_string() == g.to_xml_string()


def test_xml_refuses_overwrite(tmp_path) -> None:
    path = tmp_path / "b.xml"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="force"):
        get_geometry("ds2").to_xml(path)
    assert path.read_text() == "keep me"
    get_geometry("ds2").to_xml(path, force=True)
    assert "<Bins>" in path.read_text()


@pytest.mark.parametrize(("name", "filename"), list(OFFICIAL.items()))
def test_builtin_matches_official_file(name: str, filename: str, official_binning_dir) -> None:
    official = CylindricalGeometry.from_xml(official_binning_dir / filename)
    builtin = get_geometry(name)
    assert official.same_binning(builtin)
    assert official.particle == builtin.particle
    assert official.n_xml_layers == builtin.n_xml_layers


def test_bad_xml_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<Bins><Bin name='x'><Layer id='0' r_edges='0,2,1' n_bin_alpha='1'/></Bin></Bins>")
    with pytest.raises(GeometryError, match=r"bad\.xml.*increase"):
        CylindricalGeometry.from_xml(bad)
    broken = tmp_path / "broken.xml"
    broken.write_text("<Bins><Bin")
    with pytest.raises(GeometryError, match=r"broken\.xml"):
        CylindricalGeometry.from_xml(broken)
    with pytest.raises(GeometryError, match="unknown geometry"):
        get_geometry("ds9")


def test_images_reshape_is_layer_alpha_r() -> None:
    g = get_geometry("ds2")
    showers = np.arange(2 * g.n_voxels, dtype=float).reshape(2, -1)
    images = g.to_images(showers)
    assert images.shape == (2, 45, 16, 9)
    idx = g.voxel_index(3, 5, 7)
    assert images[1, 3, 5, 7] == showers[1, idx]


def test_crystal_grid() -> None:
    grid = CrystalGrid("ecal", 5, 5)
    assert grid.n_voxels == 25
    np.testing.assert_allclose(grid.centres[grid.index(2, 2)], [0, 0])
    np.testing.assert_allclose(grid.centres[grid.index(4, 0)], [2, -2])
    with pytest.raises(GeometryError):
        grid.index(5, 0)


def test_material_mixture_and_stack() -> None:
    w_si = sampling_mixture("W/Si", [(TUNGSTEN, 1.4), (SILICON, 0.3)])
    # 1.7 mm of which 1.4/3.504 + 0.3/93.7 X0: about 0.403 X0 per sub-layer, 0.8 X0 per read-out layer.
    assert w_si.radiation_length_mm == pytest.approx(1.7 / (1.4 / 3.504 + 0.3 / 93.7), rel=1e-9)
    assert 2 * 1.7 / w_si.radiation_length_mm == pytest.approx(0.805, abs=0.01)
    assert 10.0 < w_si.moliere_radius_mm < 11.5
    stack = LayerStack.uniform(w_si, 45, 0.8)
    assert stack.ends[-1] == pytest.approx(36.0)
    with pytest.raises(GeometryError):
        LayerStack(w_si, ((0.0, 1.0), (0.5, 2.0)))
