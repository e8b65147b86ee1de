"""Simulation in shards on Dask: the fast engine or Geant4, one file per shard, read as one file.

A shard is a row range of the whole run and draws exactly the showers the unsharded engines put
in those rows (the fast engine seeds each block of 256 showers, Geant4 each chunk, from the run's
seed and the block's place alone). So the sharded file equals ``calo simulate`` without workers,
row by row, whatever the number of workers and however often the job was killed and rerun. See
:mod:`calosurrogate.data.shards` for the files and :mod:`calosurrogate.cluster` for the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

from calosurrogate._io import check_output_path
from calosurrogate.cluster import dask_client, die_with_parent, run_tasks
from calosurrogate.data.shards import (
    missing_shards,
    prepare_folder,
    shard_bounds,
    shard_folder,
    shard_path,
    write_virtual_file,
)
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.simulate.detectors import DetectorDescription
from calosurrogate.simulate.simulator import BLOCK_SIZE, simulate_to_file

FAST_SHARD = 40 * BLOCK_SIZE  # 10,240 showers: seconds of the fast engine for ds2
GEANT4_CHUNKS_PER_SHARD = 10


def _fast_shard(detector: DetectorDescription, n: int, rows: tuple[int, int], path: str, spectrum: str, seed: int,
                dtype: str) -> None:  # fmt: skip
    if not Path(path).exists():  # a rerun, or a task Dask ran twice: the shard is there, whole
        simulate_to_file(detector, n, path, spectrum, seed, dtype, force=True, progress=False, rows=rows)


def _geant4_shard(job: dict) -> None:
    if Path(job["out"]).exists():
        return
    command = [sys.executable, "-m", "calosurrogate.simulate.geant4", "shard", json.dumps(job)]
    # a worker that dies (its job killed) takes its Geant4 process with it
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=partial(die_with_parent, os.getpid()))
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the Geant4 shard {job['out']} failed (exit {done.returncode}): {tail}")


def simulate_sharded(
    detector: DetectorDescription,
    n: int,
    out: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    engine: str = "fast",
    shard_size: int | None = None,
    scheduler: str | None = None,
    workers: int = 1,
    chunk_size: int = 50,
    range_cut_mm: float | None = None,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
) -> tuple[Path, float]:
    """Simulate ``n`` showers in shards on Dask into ``out`` (a file of virtual datasets) and
    ``out.shards/``; returns the path and the wall seconds of the shards run now.

    Args:
        engine: ``"fast"`` or ``"geant4"``.
        shard_size: Showers per shard: a multiple of 256 for the fast engine (default 10,240), of
            ``chunk_size`` for Geant4 (default ten chunks).
        scheduler: Address of a Dask scheduler; None: a local cluster of ``workers`` processes.
        chunk_size: Geant4: showers per saved chunk inside a shard (a killed shard resumes from them).
        range_cut_mm: Geant4's production cut (None: nominal).

    Raises:
        ValueError: A shard size that does not fit the engine's blocks, an unknown engine, or a
            shard folder of another job.
        OutputExistsError: ``out`` exists and ``force`` is not set.
    """
    if engine not in ("fast", "geant4"):
        raise ValueError(f"engine must be fast or geant4, got {engine!r}")
    unit = BLOCK_SIZE if engine == "fast" else chunk_size
    shard_size = shard_size or (FAST_SHARD if engine == "fast" else GEANT4_CHUNKS_PER_SHARD * chunk_size)
    if shard_size % unit:
        raise ValueError(f"shard size {shard_size}: the {engine} engine draws showers in runs of {unit}, "
                         f"so a shard holds a multiple of {unit}")  # fmt: skip
    out = check_output_path(out, force)
    spectrum = spectrum or detector.default_spectrum
    spec = spectrum.spec if isinstance(spectrum, EnergySpectrum) else EnergySpectrum.parse(spectrum).spec
    folder = shard_folder(out)
    manifest = {"kind": "simulate", "engine": engine, "detector": detector.name, "n": n, "spectrum": spec,
                "seed": seed, "shard_size": shard_size, "dtype": dtype}  # fmt: skip
    if engine == "geant4":
        from calosurrogate.simulate.geant4.application import PRODUCTION_CUT_MM, layout_of
        from calosurrogate.simulate.geant4.build import physics_library

        layout_of(detector)
        physics_library()  # compiled here once, not by every shard at the same time
        manifest.update(chunk_size=chunk_size, range_cut_mm=float(range_cut_mm or PRODUCTION_CUT_MM))
    prepare_folder(folder, manifest, force)
    bounds = shard_bounds(n, shard_size)
    todo = missing_shards(folder, bounds)
    seconds = 0.0
    if todo:
        if engine == "fast":
            function = _fast_shard
            arguments = [(detector, n, bounds[i], str(shard_path(folder, i)), spec, seed, dtype) for i in todo]
        else:
            function = _geant4_shard
            common = {"detector": detector.name, "n": n, "spectrum": spec, "seed": seed, "chunk_size": chunk_size,
                      "dtype": dtype, "range_cut_mm": manifest["range_cut_mm"]}  # fmt: skip
            arguments = [({**common, "rows": bounds[i], "out": str(shard_path(folder, i))},) for i in todo]
        with dask_client(scheduler, workers) as client:
            sizes = [bounds[i][1] - bounds[i][0] for i in todo]
            _, seconds = run_tasks(client, function, arguments, sizes, f"simulate {detector.name} ({engine})", progress)
    write_virtual_file(out, bounds, {"seed": seed, "shard_size": shard_size}, force=force)
    return out, seconds


__all__ = ["FAST_SHARD", "simulate_sharded"]
