"""Device names: 'auto', CPU, and a clear error for a CUDA device that is not there."""

from __future__ import annotations

import pytest
import torch

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
