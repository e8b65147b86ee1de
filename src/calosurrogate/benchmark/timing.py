"""Time per shower of a surrogate, measured the way the CaloChallenge table reports it.

For each batch size, device and precision: warm-up calls first (allocator, autocast caches,
compilation), then repeated timed calls of one full sampling pass (noise, network, cut), each
closed by a device synchronisation, until both a minimum number of repeats and a minimum
wall time are reached. Reported: the median time per shower with the 16-84% spread of the
repeats, showers per second, and peak memory (CUDA: the allocator's peak for that
configuration; CPU: the process's peak resident memory so far, which can only grow).
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from calosurrogate.devices import resolve_device, resolve_precision
from calosurrogate.models.base import Surrogate, autocast_context


@dataclass
class TimingResult:
    """One configuration's timing.

    Attributes:
        ms_per_shower: Median over repeats of (call time / batch size), milliseconds.
        ms_per_shower_low, ms_per_shower_high: 16th and 84th percentiles of the same.
        showers_per_second: ``1000 / ms_per_shower``.
        peak_memory_mb: See module docstring.
        repeats: Timed calls.
        compiled: Whether ``torch.compile`` was used (``compile_error`` says why not, if it failed).
    """

    family: str
    batch_size: int
    device: str
    precision: str
    threads: int
    compiled: bool
    ms_per_shower: float
    ms_per_shower_low: float
    ms_per_shower_high: float
    showers_per_second: float
    peak_memory_mb: float
    repeats: int
    compile_error: str | None = None

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # kB on Linux


def _sampler(
    model: Surrogate, device: torch.device, precision: str, compile_model: bool
) -> tuple[Callable, str | None]:
    def run(conditions: torch.Tensor) -> torch.Tensor:
        return model.apply_cut(model.sample_showers(conditions))

    if not compile_model:
        return run, None
    try:
        compiled = torch.compile(run, dynamic=False)
        with torch.inference_mode(), autocast_context(device, precision):
            compiled(torch.full((2, model.n_conditions), 1e4, device=device))
        return compiled, None
    except Exception as err:  # report, and time the eager version instead
        return run, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def time_sampling(
    model: Surrogate,
    conditions: np.ndarray,
    batch_size: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    warmup: int = 2,
    min_repeats: int = 5,
    min_seconds: float = 2.0,
    max_repeats: int = 200,
    compile_model: bool = False,
) -> TimingResult:
    """Time one sampling configuration.

    Args:
        model: A trained surrogate.
        conditions: Raw conditions to draw batches from, ``(M, C)``; cycled if ``M < batch_size``.
        batch_size: Showers per call.
        device: Where to run.
        precision: ``fp32``, ``bf16`` or ``fp16`` (CUDA).
        warmup: Untimed calls first.
        min_repeats, min_seconds, max_repeats: Timed calls: at least ``min_repeats`` and at least
            ``min_seconds`` of timed work, at most ``max_repeats``.
        compile_model: Wrap the sampling pass in ``torch.compile`` (falls back to eager on failure).
    """
    device = resolve_device(device)
    precision = resolve_precision(precision, device, batch_size)  # results name what ran
    model.to(device).eval()
    cond = np.asarray(conditions, dtype=np.float32).reshape(len(conditions), -1)
    index = np.arange(batch_size) % len(cond)
    batch = torch.as_tensor(cond[index], device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run, compile_error = _sampler(model, device, precision, compile_model)
    times: list[float] = []
    with torch.inference_mode(), autocast_context(device, precision):
        for _ in range(warmup):
            run(batch)
        _synchronize(device)
        total = 0.0
        while len(times) < max_repeats and (len(times) < min_repeats or total < min_seconds):
            start = time.perf_counter()
            run(batch)
            _synchronize(device)
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            total += elapsed
    per_shower = 1e3 * np.asarray(times) / batch_size
    median = float(np.median(per_shower))
    return TimingResult(
        family=model.family, batch_size=batch_size, device=str(device), precision=precision,
        threads=torch.get_num_threads(), compiled=compile_model and compile_error is None,
        ms_per_shower=median, ms_per_shower_low=float(np.percentile(per_shower, 16)),
        ms_per_shower_high=float(np.percentile(per_shower, 84)),
        showers_per_second=1e3 / median if median > 0 else math.inf,
        peak_memory_mb=_peak_memory_mb(device), repeats=len(times), compile_error=compile_error,
    )  # fmt: skip


def time_grid(
    model: Surrogate,
    conditions: np.ndarray,
    batch_sizes: Sequence[int],
    precisions: Sequence[str],
    device: str | torch.device = "cpu",
    compile_model: bool = False,
    progress: Callable[[TimingResult], None] | None = None,
    **kwargs,
) -> list[TimingResult]:
    """:func:`time_sampling` for every batch size x precision (precisions the device cannot run are refused early)."""
    device = resolve_device(device)
    for precision in precisions:
        autocast_context(device, precision)  # raises for fp16 on CPU before any timing
    results = []
    for precision in precisions:
        for batch_size in batch_sizes:
            result = time_sampling(
                model, conditions, batch_size, device, precision, compile_model=compile_model, **kwargs
            )
            results.append(result)
            if progress is not None:
                progress(result)
    return results


__all__ = ["TimingResult", "time_grid", "time_sampling"]
