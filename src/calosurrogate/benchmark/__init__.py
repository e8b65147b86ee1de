"""Speed benchmarks of trained surrogates: time per shower by batch size, device and precision."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from calosurrogate._io import atomic_output, check_output_path
from calosurrogate.benchmark.timing import TimingResult, time_grid, time_sampling
from calosurrogate.devices import cpu_bf16_support
from calosurrogate.models.base import Surrogate


def machine_description() -> dict:
    """The machine a timing was taken on (CPU model, cores, torch build, GPU if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # bf16 timings depend on it more than on the model name: faster than fp32 with AMX, 3-8x slower without.
        "cpu_bf16": cpu_bf16_support() or "emulated",
    }  # fmt: skip


def default_conditions(model: Surrogate, n: int = 10_000, seed: int = 0) -> np.ndarray:
    """Conditions to time with: log-uniform 1 GeV - 1 TeV (ds1: the powers of two), extra columns at 0.1."""
    rng = np.random.default_rng(seed)
    if model.geometry.name.startswith("ds1"):
        energies = 2.0 ** rng.integers(8, 23, n)
    else:
        energies = np.exp(rng.uniform(np.log(1e3), np.log(1e6), n))
    return np.column_stack([energies] + [np.full(n, 0.1)] * (model.n_conditions - 1))


def bench_to_dir(
    model: Surrogate,
    out: str | os.PathLike[str],
    batch_sizes: Sequence[int] = (1, 100, 10_000),
    precisions: Sequence[str] = ("fp32", "bf16"),
    device: str = "cpu",
    compile_model: bool = False,
    conditions: np.ndarray | None = None,
    force: bool = False,
    progress: Callable[[TimingResult], None] | None = None,
    **timing_kwargs,
) -> tuple[Path, list[TimingResult]]:
    """Time every batch size x precision and write ``bench.json`` and ``timing.png`` into ``out``."""
    from calosurrogate.plotting import figure_timing

    out = Path(out)
    json_path, png_path = out / "bench.json", out / "timing.png"
    check_output_path(json_path, force)
    out.mkdir(parents=True, exist_ok=True)
    conditions = default_conditions(model) if conditions is None else conditions
    results = time_grid(model, conditions, batch_sizes, precisions, device, compile_model, progress, **timing_kwargs)
    rows = [r.as_dict() for r in results]
    figure = figure_timing(rows)
    with atomic_output(png_path, force=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    with atomic_output(json_path, force=force) as tmp:
        Path(tmp).write_text(json.dumps({"machine": machine_description(), "results": rows}, indent=2))
    return json_path, results


__all__ = ["TimingResult", "bench_to_dir", "default_conditions", "machine_description", "time_grid", "time_sampling"]
