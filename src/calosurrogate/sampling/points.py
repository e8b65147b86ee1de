"""Point-cloud showers from a trained CaloClouds model into a point-cloud file, batch by batch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from calosurrogate.data.points import PointCloudFile, PointClouds, PointCloudWriter
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.models.caloclouds import CaloClouds
from calosurrogate.simulate.points import PointShowerSimulator


def point_conditions_from_file(path: str | os.PathLike[str], n: int | None = None) -> PointClouds:
    """The conditions (energies, directions, entry points) of a point-cloud file's first ``n`` showers, no points."""
    with PointCloudFile(path) as f:
        return f.conditions(0, n)


def point_conditions_from_spectrum(model: CaloClouds, spectrum: str, n: int, seed: int) -> PointClouds:
    """Conditions drawn as the simulator draws them: ``spectrum``, angles over the acceptance."""
    rng = np.random.default_rng(seed)
    energies, directions, entry = PointShowerSimulator(model.geometry).conditions(n, EnergySpectrum.parse(spectrum),
                                                                                   rng)  # fmt: skip
    return PointClouds(energies, directions, entry, np.zeros(n + 1, np.int64), np.zeros((0, 4), np.float32))


def sample_points_to_file(model: CaloClouds, conditions: PointClouds, out: str | os.PathLike[str],
                          batch_size: int = 1000, steps: int | None = None, seed: int = 0, force: bool = False,
                          progress: bool = True, precision: str = "fp32") -> tuple[Path, float]:  # fmt: skip
    """Generate one shower per condition into ``out``; returns the file and the seconds spent sampling
    (writing excluded). Batch ``k`` draws from seed ``seed + k``."""
    attrs = {"generator": f"calosurrogate {model.family} ({'one-step student' if steps in (None, 0) and bool(model.distilled) else 'teacher'})",
             "seed": seed}  # fmt: skip
    seconds = 0.0
    with PointCloudWriter(out, model.geometry, force=force, attrs=attrs) as writer, torch.inference_mode():
        bar = tqdm(total=len(conditions), desc="sample", unit="shower", disable=not progress)
        for k, lo in enumerate(range(0, len(conditions), batch_size)):
            hi = min(lo + batch_size, len(conditions))
            start = time.perf_counter()
            block = model.sample(conditions.incident_energies[lo:hi], conditions.directions[lo:hi],
                                 conditions.entry_points[lo:hi], steps=steps, seed=seed + k,
                                 precision=precision)  # fmt: skip
            seconds += time.perf_counter() - start
            writer.write(block)
            bar.update(hi - lo)
        bar.close()
    return Path(out), seconds
