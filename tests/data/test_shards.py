"""Sharded files without Dask: shard plans and seeds, the virtual file that reads shards as one,
a missing shard refused by name, and another job's shard folder refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from calosurrogate._io import OutputExistsError
from calosurrogate.data import ShowerFile, ShowerFileError, write_showers
from calosurrogate.data.shards import (
    missing_shards,
    prepare_folder,
    shard_bounds,
    shard_folder,
    shard_path,
    shard_seed,
    write_virtual_file,
)


def test_bounds_cover_the_rows_once() -> None:
    assert shard_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_bounds(8, 4) == [(0, 4), (4, 8)]
    assert shard_bounds(3, 10) == [(0, 3)]
    with pytest.raises(ValueError):
        shard_bounds(0, 4)


def test_shard_seeds_differ_and_repeat() -> None:
    seeds = [shard_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100 and seeds == [shard_seed(7, i) for i in range(100)]
    assert shard_seed(8, 0) != shard_seed(7, 0)


def _shards(tmp_path, sizes, seed=0):
    out = tmp_path / "all.h5"
    folder = shard_folder(out)
    folder.mkdir()
    rng = np.random.default_rng(seed)
    energies, showers, angles = [], [], []
    for i, size in enumerate(sizes):
        e, s, a = rng.uniform(1e3, 1e5, (size, 1)), rng.exponential(1.0, (size, 6)), rng.uniform(0, 1, (size, 1))
        write_showers(shard_path(folder, i), e, s, conditions={"incident_angles": a}, attrs={"seed": i})
        energies.append(e), showers.append(s), angles.append(a)
    bounds = list(zip(np.cumsum([0, *sizes[:-1]]).tolist(), np.cumsum(sizes).tolist(), strict=True))
    return out, bounds, np.concatenate(energies), np.concatenate(showers), np.concatenate(angles)


def test_the_virtual_file_reads_as_one(tmp_path) -> None:
    out, bounds, energies, showers, angles = _shards(tmp_path, [5, 5, 3])
    write_virtual_file(out, bounds, {"seed": 42})
    with ShowerFile(out, conditions=("incident_angles",)) as f:
        batch = f.read()
        assert f.n_showers == 13
        np.testing.assert_allclose(batch.showers, showers.astype(np.float32))
        np.testing.assert_allclose(batch.incident_energies, energies.astype(np.float32))
        np.testing.assert_allclose(batch.conditions["incident_angles"], angles.astype(np.float32))
        chunks = [c.showers for c in f.iter_chunks(4)]  # across shard boundaries
        np.testing.assert_allclose(np.concatenate(chunks), showers.astype(np.float32))
    with h5py.File(out) as f:
        assert f["showers"].is_virtual and f.attrs["seed"] == 42 and f.attrs["shards"] == 3
    with pytest.raises(OutputExistsError):
        write_virtual_file(out, bounds)
    # the pair moves together: sources are relative to the file
    moved = tmp_path / "moved"
    moved.mkdir()
    out.rename(moved / out.name)
    shard_folder(out).rename(shard_folder(moved / out.name))
    with ShowerFile(moved / out.name) as f:
        np.testing.assert_allclose(f.read().showers, showers.astype(np.float32))


def test_a_missing_shard_is_named_not_read_as_fill_values(tmp_path) -> None:
    out, bounds, *_ = _shards(tmp_path, [4, 4])
    write_virtual_file(out, bounds)
    shard_path(shard_folder(out), 1).unlink()
    with pytest.raises(ShowerFileError, match=r"shard-00001\.h5, which is missing"):
        ShowerFile(out)
    assert missing_shards(shard_folder(out), bounds) == [1]
    with pytest.raises(ShowerFileError, match="lacks 1 shard"):
        write_virtual_file(tmp_path / "all.h5", bounds, force=True)


def test_shards_that_disagree_are_refused(tmp_path) -> None:
    out, *_ = _shards(tmp_path, [4, 4])
    with pytest.raises(ShowerFileError, match="holds 4 showers, its shard has 3"):
        missing_shards(shard_folder(out), [(0, 4), (4, 7)])
    with pytest.raises(ShowerFileError, match="expected"):
        write_virtual_file(out, [(0, 4), (4, 9)])


def test_another_jobs_folder_is_refused_unless_forced(tmp_path) -> None:
    folder = tmp_path / "x.h5.shards"
    prepare_folder(folder, {"seed": 1}, force=False)
    (folder / "shard-00000.h5").write_bytes(b"")
    prepare_folder(folder, {"seed": 1}, force=False)  # the same job: its shards stay
    assert (folder / "shard-00000.h5").exists()
    with pytest.raises(ValueError, match="other settings"):
        prepare_folder(folder, {"seed": 2}, force=False)
    prepare_folder(folder, {"seed": 2}, force=True)
    assert not (folder / "shard-00000.h5").exists()
