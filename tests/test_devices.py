"""Device names: 'auto', CPU, and a clear error for a CUDA device that is not there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calosurrogate import devices
from calosurrogate.devices import resolve_device


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_unknown_device_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_gives_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'cuda' is not available.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_beyond_the_devices_is_refused() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize(("support", "expected"), [("AMX", "bf16"), ("AVX512-BF16", "bf16"), (None, "fp32")])
def test_auto_precision_takes_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, support, expected) -> None:
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: support)
    assert devices.resolve_precision("auto", torch.device("cpu")) == expected


def test_explicit_precisions_are_kept_and_emulated_bf16_is_warned_about(monkeypatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: None)
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert devices.resolve_precision("bf16", cpu) == "bf16"
    assert devices.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        devices.resolve_precision("fp8", cpu)


def test_cpu_bf16_support_agrees_with_torch() -> None:
    support = devices.cpu_bf16_support()
    native = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert (support is not None) == native


def test_training_and_sampling_resolve_auto(monkeypatch, tmp_path) -> None:
    """A run with precision "auto" trains, and its sample file records the precision that ran."""
    import h5py

    from calosurrogate.models import build_surrogate
    from calosurrogate.sampling import sample_to_file
    from calosurrogate.simulate import get_detector, simulate_to_file
    from calosurrogate.training import TrainConfig, train

    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: None)
    detector = get_detector("ds1-photons")
    data = simulate_to_file(detector, 64, tmp_path / "train.h5", seed=0)
    model = build_surrogate("vae", detector.geometry, {})
    train(model, data, tmp_path / "run", TrainConfig(epochs=1, batch_size=32, precision="auto"))
    out, _ = sample_to_file(model, np.full((8, 1), 1e4), tmp_path / "gen.h5", precision="auto", progress=False)
    with h5py.File(out) as f:
        assert f.attrs["precision"] == "fp32"


def test_auto_precision_samples_small_cpu_batches_in_fp32(monkeypatch, tiny_geometry, tmp_path) -> None:
    """bf16 does not pay for itself on small CPU batches: auto takes fp32 there, and the file says so."""
    import h5py

    from calosurrogate.models import build_surrogate
    from calosurrogate.sampling import sample_to_file

    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: "AMX")
    cpu = torch.device("cpu")
    small, large = devices.CPU_BF16_MIN_BATCH - 1, devices.CPU_BF16_MIN_BATCH
    assert devices.resolve_precision("auto", cpu, small) == "fp32"
    assert devices.resolve_precision("auto", cpu, large) == "bf16"
    assert devices.resolve_precision("auto", cpu) == "bf16"  # training: no sampling batch
    assert devices.resolve_precision("bf16", cpu, 1) == "bf16"  # asked for explicitly: kept
    model = build_surrogate("vae", tiny_geometry, {"hidden": 8, "latent": 2})
    model.fit_preprocessing(torch.rand(50, tiny_geometry.n_voxels) * 10, torch.full((50, 1), 1e4))
    for n, expected in ((3, "fp32"), (large, "bf16")):
        out = tmp_path / f"{n}.h5"
        sample_to_file(model, np.full((n, 1), 1e4), out, batch_size=1000, precision="auto", progress=False)
        with h5py.File(out) as f:
            assert f.attrs["precision"] == expected
