from __future__ import annotations

import h5py
import numpy as np
import pytest

from calosurrogate.data import ShowerFile, ShowerFileError, ShowerWriter, inspect_file, read_showers, write_showers
from calosurrogate.geometry import get_geometry

DS1 = get_geometry("ds1-photons")


def _showers(rng: np.random.Generator, n: int = 50, n_voxels: int = 368) -> tuple[np.ndarray, np.ndarray]:
    energies = rng.uniform(1e3, 1e5, (n, 1))
    showers = rng.exponential(10.0, (n, n_voxels)) * (rng.random((n, n_voxels)) < 0.5)
    return energies, showers


def _raw_file(path, **datasets) -> None:
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f.create_dataset(name, data=value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_and_streaming(tmp_path, rng, dtype: str) -> None:
    energies, showers = _showers(rng)
    path = write_showers(tmp_path / "s.h5", energies, showers, dtype=dtype)
    with h5py.File(path) as f:
        assert f["showers"].compression == "gzip"
        assert f["showers"].dtype == np.dtype(dtype)
    whole = read_showers(path, DS1)
    np.testing.assert_allclose(whole.showers, showers.astype(dtype))
    np.testing.assert_allclose(whole.incident_energies, energies.astype(dtype))
    with ShowerFile(path, DS1) as f:
        chunks = list(f.iter_chunks(chunk_size=7))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    np.testing.assert_array_equal(np.concatenate([c.showers for c in chunks]), whole.showers)


def test_append_and_failed_append_rolls_back(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 10)
    path = write_showers(tmp_path / "s.h5", energies, showers)
    with ShowerWriter(path, 368, append=True) as w:
        w.write(energies, showers)
    assert ShowerFile(path).n_showers == 20
    with pytest.raises(RuntimeError, match="boom"), ShowerWriter(path, 368, append=True) as w:
        w.write(energies, showers)
        raise RuntimeError("boom")
    with ShowerFile(path) as f:
        assert f.n_showers == 20
        np.testing.assert_allclose(f.read(10, 20).showers, showers.astype("float32"))
    with pytest.raises(ShowerFileError, match="append"), ShowerWriter(path, 533, append=True):
        pass


def test_failed_write_leaves_nothing(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 5)
    path = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), ShowerWriter(path, 368) as w:
        w.write(energies, showers)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_not_overwritten(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 5)
    path = write_showers(tmp_path / "s.h5", energies, showers)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="force"):
        write_showers(path, energies * 2, showers)
    assert path.read_bytes() == before
    write_showers(path, energies * 2, showers, force=True)
    np.testing.assert_allclose(read_showers(path).incident_energies, (energies * 2).astype("float32"))


def test_conditions_datasets(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 6)
    angles = rng.uniform(0, 1, (6, 2))
    path = write_showers(tmp_path / "s.h5", energies, showers, conditions={"incident_angles": angles})
    with ShowerFile(path, conditions=["incident_angles"]) as f:
        assert f.available_conditions == ["incident_angles"]
        np.testing.assert_allclose(f.read().conditions["incident_angles"], angles.astype("float32"))
    with pytest.raises(ShowerFileError, match=r"\[detector_parameters\].*missing"):
        ShowerFile(path, conditions=["detector_parameters"])


# --------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path) -> None:
    with pytest.raises(ShowerFileError, match="no such file"):
        ShowerFile(tmp_path / "nope.h5")


def test_missing_dataset(tmp_path, rng) -> None:
    path = tmp_path / "m.h5"
    _raw_file(path, showers=_showers(rng)[1])
    with pytest.raises(ShowerFileError, match=r"m\.h5 \[incident_energies\]: dataset missing.*showers"):
        ShowerFile(path)


def test_voxel_count_mismatch(tmp_path, rng) -> None:
    path = write_showers(tmp_path / "v.h5", *_showers(rng, 4))
    with pytest.raises(ShowerFileError, match=r"\[showers\]: 368 voxels.*'ds2' has 6480.*ds1-photons"):
        ShowerFile(path, get_geometry("ds2"))


def test_incident_energies_shape(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 4)
    path = tmp_path / "e.h5"
    _raw_file(path, incident_energies=energies[:, 0], showers=showers)
    with pytest.raises(ShowerFileError, match=r"\[incident_energies\]: shape \(4,\), expected \(N, 1\)"):
        ShowerFile(path)


def test_different_counts(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 4)
    path = tmp_path / "n.h5"
    _raw_file(path, incident_energies=energies[:3], showers=showers)
    with pytest.raises(ShowerFileError, match="4 showers but 3 incident energies"):
        ShowerFile(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(tmp_path, rng, bad: float) -> None:
    energies, showers = _showers(rng, 4)
    showers[2, 5] = bad
    path = tmp_path / "nan.h5"
    _raw_file(path, incident_energies=energies, showers=showers)
    with pytest.raises(ShowerFileError, match=r"\[showers\]: 1 NaN or infinite values.*first at row 2"):
        read_showers(path)


def test_negative_energies_counted_or_clipped(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 4)
    showers[0, :3] = -1.0
    showers[3, 7] = -0.5
    path = tmp_path / "neg.h5"
    _raw_file(path, incident_energies=energies, showers=showers)
    with pytest.raises(ShowerFileError, match=r"4 negative energies.*clip"):
        read_showers(path)
    clipped = read_showers(path, negative="clip")
    assert clipped.showers.min() == 0.0
    assert clipped.showers[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert inspect_file(path).negative_values == 4


def test_non_positive_incident_energy(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 4)
    energies[1] = 0.0
    path = tmp_path / "e0.h5"
    _raw_file(path, incident_energies=energies, showers=showers)
    with pytest.raises(ShowerFileError, match=r"1 zero or negative incident energies \(first at shower 1\)"):
        read_showers(path)


def test_integer_dtype_refused(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 4)
    path = tmp_path / "i.h5"
    _raw_file(path, incident_energies=energies, showers=showers.astype(np.int32))
    with pytest.raises(ShowerFileError, match=r"\[showers\]: dtype int32"):
        ShowerFile(path)


def test_not_hdf5(tmp_path) -> None:
    path = tmp_path / "text.h5"
    path.write_text("this is not HDF5")
    with pytest.raises(ShowerFileError, match=r"text\.h5: not a readable HDF5 file"):
        ShowerFile(path)


def test_truncated_file(tmp_path, rng) -> None:
    energies, showers = _showers(rng, 200)
    path = write_showers(tmp_path / "t.h5", energies, showers)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShowerFileError, match=r"cut\.h5.*truncated"):
        read_showers(cut)


def test_inspect_by_hand(tmp_path) -> None:
    g = get_geometry("ds1-photons")
    showers = np.zeros((2, g.n_voxels))
    showers[0, g.layer_slice(1)] = 1.0  # 160 voxels of 1 MeV in layer 1
    showers[1, g.layer_slice(4)] = 2.0  # 5 voxels of 2 MeV in layer 12
    path = write_showers(tmp_path / "h.h5", np.array([[160.0], [20.0]]), showers)
    s = inspect_file(path, g)
    assert s.n_showers == 2 and s.matching_geometries == ["ds1-photons"]
    assert s.incident_energy_min == 20.0 and s.incident_energy_max == 160.0
    assert s.energy_ratio_mean == pytest.approx((1.0 + 0.5) / 2)
    assert s.sparsity == pytest.approx(1 - (160 + 5) / (2 * 368))
    assert s.layer_mean_energy == pytest.approx([0.0, 80.0, 0.0, 0.0, 5.0])
    assert "ds1-photons" in s.to_text()
