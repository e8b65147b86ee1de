"""Point-cloud files and the projection of points onto cells."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from calosurrogate.data import ShowerFileError
from calosurrogate.data.points import (
    ENERGY,
    PointCloudFile,
    PointClouds,
    PointCloudWriter,
    is_point_cloud_file,
    project,
    read_point_clouds,
    write_point_clouds,
)
from calosurrogate.geometry import ild_ecal
from calosurrogate.geometry.planar import direction_from_angles


def _clouds(n: int = 6, seed: int = 0) -> PointClouds:
    rng = np.random.default_rng(seed)
    showers = []
    for _ in range(n):
        m = int(rng.integers(0, 50))
        showers.append(np.column_stack([rng.normal(0, 20, (m, 2)), rng.integers(0, 30, m), rng.exponential(0.3, m)]))
    directions = direction_from_angles(rng.uniform(-0.5, 0.5, n), rng.uniform(-0.5, 0.5, n))
    return PointClouds.from_showers(rng.uniform(1e4, 9e4, n), directions, rng.uniform(-2.5, 2.5, (n, 2)), showers)


def test_write_read_select_round_trip(tmp_path) -> None:
    clouds = _clouds(7)
    path = write_point_clouds(tmp_path / "p.h5", clouds, ild_ecal(), attrs={"seed": 3})
    assert is_point_cloud_file(path)
    back = read_point_clouds(path)
    np.testing.assert_array_equal(back.offsets, clouds.offsets)
    np.testing.assert_allclose(back.points, clouds.points)
    np.testing.assert_allclose(back.directions, clouds.directions)
    part = read_point_clouds(path, 2, 5)
    np.testing.assert_allclose(part.points, np.concatenate([clouds.shower(i) for i in (2, 3, 4)]))
    picked = clouds.select(np.array([4, 0, 4]))
    for k, i in enumerate((4, 0, 4)):
        np.testing.assert_array_equal(picked.shower(k), clouds.shower(i))
    with pytest.raises(FileExistsError, match="--force"):
        write_point_clouds(path, clouds, ild_ecal())


def test_writer_in_blocks_equals_one_block(tmp_path) -> None:
    clouds = _clouds(9, seed=1)
    with PointCloudWriter(tmp_path / "b.h5", ild_ecal()) as writer:
        writer.write(clouds.select(np.arange(4)))
        writer.write(clouds.select(np.arange(4, 9)))
    back = read_point_clouds(tmp_path / "b.h5")
    np.testing.assert_array_equal(back.offsets, clouds.offsets)
    np.testing.assert_allclose(back.points, clouds.points)


def test_a_failed_writer_leaves_no_file(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="boom"), PointCloudWriter(tmp_path / "x.h5", ild_ecal()) as writer:
        writer.write(_clouds(3))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_named_with_their_dataset(tmp_path) -> None:
    path = write_point_clouds(tmp_path / "p.h5", _clouds(4), ild_ecal())
    with h5py.File(path, "r+") as f:
        f["offsets"][-1] = 10**6
    with pytest.raises(ShowerFileError, match=r"p.h5 \[offsets\]: runs 0..1000000"):
        PointCloudFile(path)
    with h5py.File(path, "r+") as f:
        del f["directions"]
    with pytest.raises(ShowerFileError, match=r"\[directions\]: dataset missing"):
        PointCloudFile(path)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["showers"] = np.zeros((2, 3))
    with pytest.raises(ShowerFileError, match="not a point-cloud file"):
        PointCloudFile(tmp_path / "other.h5")


@pytest.mark.parametrize("cell_mm", [5.0, 10.0, 2.5])
def test_projection_conserves_the_energy_inside_the_grid(cell_mm) -> None:
    g = ild_ecal()
    clouds = _clouds(20, seed=2)
    clouds.points[:5, 0] = 400.0  # beyond the segment's 300 mm half width: lost to it
    hits = project(clouds, g, cell_mm)
    shifts = g.shifts(clouds.directions, clouds.entry_points)
    layer = clouds.points[:, 2].astype(int)
    inside = g.contains(g.to_global(clouds.points[:, :2], layer, shifts[clouds.shower_index, layer]))
    assert not inside[:5].any() and inside[5:].all()
    expected = np.bincount(clouds.shower_index[inside], weights=clouds.points[inside, ENERGY], minlength=20)
    got = np.bincount(hits.shower_index, weights=hits.energy, minlength=20)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # one hit per cell, and every point inside lands in the cell of its detector position
    keys = np.column_stack([hits.shower_index, hits.layer, hits.ix, hits.iy])
    assert len(np.unique(keys, axis=0)) == len(keys)
    xy = g.to_global(clouds.points[:, :2], layer, shifts[clouds.shower_index, layer])[inside]
    cells = np.floor(xy / cell_mm).astype(int)
    point_keys = np.column_stack([clouds.shower_index[inside], layer[inside], cells])
    assert {tuple(k) for k in point_keys} == {tuple(k) for k in keys}
    # a hit's local centre is its detector centre in the shower's frame
    centre = (np.column_stack([hits.ix, hits.iy]) + 0.5) * cell_mm
    np.testing.assert_allclose(g.to_global(hits.local_xy, hits.layer, shifts[hits.shower_index, hits.layer]), centre)


def test_projection_onto_coarser_cells_is_the_sum_of_finer_ones() -> None:
    g = ild_ecal()
    clouds = _clouds(10, seed=3)
    fine, coarse = project(clouds, g, 5.0), project(clouds, g, 10.0)
    key = np.column_stack([fine.shower_index, fine.layer, fine.ix // 2, fine.iy // 2])
    unique, inverse = np.unique(key, axis=0, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=fine.energy)
    order = np.lexsort((coarse.iy, coarse.ix, coarse.layer, coarse.shower_index))
    np.testing.assert_array_equal(
        unique, np.column_stack([coarse.shower_index, coarse.layer, coarse.ix, coarse.iy])[order]
    )
    np.testing.assert_allclose(summed, coarse.energy[order])
    above = coarse.above(0.5)
    assert np.all(above.energy > 0.5) and above.offsets[-1] == (coarse.energy > 0.5).sum()
