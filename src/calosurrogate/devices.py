"""Device names -> ``torch.device``, with a clear error where the device is not there, and
``precision="auto"`` -> the fastest precision the device runs natively.

The lowest layer of the package next to geometry: training, sampling, timing and the
classifier test all take a device name from the user.
"""

from __future__ import annotations

import functools
import warnings

import torch

PRECISION_NAMES = ("auto", "fp32", "bf16", "fp16")


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


@functools.cache
def cpu_bf16_support() -> str | None:
    """The CPU's native bf16 matrix instructions (``"AMX"`` or ``"AVX512-BF16"``), or None.

    Without them torch emulates bf16 matrix products: on an AVX2-only AMD EPYC, sampling the
    ds2 WGAN and VAE took 3-4x as long as in fp32 and a ds2 diffusion training epoch 8x as long
    (BENCHMARKS.md); with AMX, bf16 matrix products are several times faster than fp32.
    """
    cpu = getattr(torch, "cpu", None)
    checks = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, check in checks:
        probe = getattr(cpu, check, None)
        if probe is not None and probe():
            return name
    return None


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix work is native (fast) on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_support() is not None


# Below this many showers per batch, "auto" samples in fp32 on a CPU: per pass, bf16 pays for
# converting the weights and its kernels' set-up, which small batches do not earn back (a ds2 flow
# on an AVX512-BF16 CPU: bf16 1.4x slower at batch 1, even at 32, faster from 100; benchmarks/LOG.md).
CPU_BF16_MIN_BATCH = 64


def resolve_precision(precision: str, device: torch.device, batch_size: int | None = None) -> str:
    """``"auto"`` -> ``"bf16"`` where the device does bf16 natively, else ``"fp32"``; on a CPU also
    ``"fp32"`` for sampling batches smaller than :data:`CPU_BF16_MIN_BATCH`.

    An explicit ``"bf16"`` is kept but warned about on a CPU without native bf16, where it is
    many times slower than fp32 (see :func:`cpu_bf16_support`).

    Args:
        batch_size: Showers per sampling pass, where known (None: training, or unknown).

    Raises:
        ValueError: If ``precision`` is not one of :data:`PRECISION_NAMES`.
    """
    if precision not in PRECISION_NAMES:
        raise ValueError(f"precision must be one of {list(PRECISION_NAMES)}, got {precision!r}")
    if precision == "auto":
        small = device.type == "cpu" and batch_size is not None and batch_size < CPU_BF16_MIN_BATCH
        return "bf16" if native_bf16(device) and not small else "fp32"
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        warnings.warn(
            "bf16 on this CPU (no AMX or AVX512-BF16) is emulated and many times slower than fp32; "
            "use precision 'auto' or 'fp32'",
            RuntimeWarning,
            stacklevel=2,
        )
    return precision


__all__ = [
    "CPU_BF16_MIN_BATCH",
    "PRECISION_NAMES",
    "cpu_bf16_support",
    "native_bf16",
    "resolve_device",
    "resolve_precision",
]
