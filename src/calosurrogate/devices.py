"""Device names -> ``torch.device``, with a clear error where the device is not there.

The lowest layer of the package next to geometry: training, sampling, timing and the
classifier test all take a device name from the user.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name is checked before use.

    Raises:
        ValueError: If the name is not a device, or names a CUDA device this machine or torch
            build does not have (instead of torch's assertion deep inside the first transfer).
    """
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = torch.__version__
            raise ValueError(
                f"device {name!r} is not available: torch {build} sees no CUDA GPU here; use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) here")
    return device


__all__ = ["resolve_device"]
