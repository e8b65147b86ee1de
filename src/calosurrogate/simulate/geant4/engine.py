"""The ``geant4`` engine: real Geant4 showers into a CaloChallenge file, in chunks, resumable.

Showers are simulated in chunks of ``chunk_size``. Chunk ``i`` draws its incident energies and
seeds Geant4 from ``(seed, i)`` alone, so a file is the same whatever the number of workers and
however often the run was interrupted. Each finished chunk is saved atomically in a folder
beside the output (``.NAME.geant4-parts``, with a manifest of the run's settings); a run that is
killed resumes from the chunks it finds, and the output appears, whole, only after the last
chunk, when the parts folder is removed. ``workers`` processes run chunks side by side (Geant4
runs one event loop per process; each worker builds its own).
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate._io import check_output_path
from calosurrogate.cluster import die_with_parent
from calosurrogate.data import ShowerWriter
from calosurrogate.data.shards import prepare_folder
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.geometry.planar import PlanarCalorimeter
from calosurrogate.simulate.detectors import DetectorDescription, get_detector
from calosurrogate.simulate.geant4.application import PRODUCTION_CUT_MM, calorimeter, layout_of
from calosurrogate.simulate.geant4.build import PINNED, bindings, physics_library
from calosurrogate.simulate.paraflow import CONDITIONS, ParaFlowSetup, ParaFlowSimulator
from calosurrogate.simulate.points import DEFAULT_SPECTRUM, PointShowerSimulator

PHYSICS = (
    "Geant4 11.4.p01 (geant4-pybind {pinned}), data-free EM physics: gamma photo-effect (PEEffectFluo), Compton "
    "(Klein-Nishina), conversion (PairProductionRel); e+- Urban msc, ionisation, relativistic bremsstrahlung over the "
    "whole range; e+ annihilation; production cut {cut} mm; no fluorescence, Auger or Rayleigh"
)


Target = str | ParaFlowSetup | PlanarCalorimeter  # a sampling calorimeter's name, ParaFlow's set-up, a planar stack


def _chunk_plan(
    n: int, chunk_size: int, spectrum: EnergySpectrum, seed: int
) -> list[tuple[dict[str, np.ndarray], int]]:
    """(conditions, Geant4 seed) of every chunk, from ``(seed, chunk)`` alone: the incident energies in MeV."""
    plan = []
    for i in range(-(-n // chunk_size)):
        rng = np.random.default_rng([seed, i])
        size = min(chunk_size, n - i * chunk_size)
        plan.append(({"incident_energies": spectrum.sample(size, rng).reshape(-1)}, int(rng.integers(1, 2**31 - 1))))
    return plan


def _paraflow_plan(n: int, chunk_size: int, spectrum: EnergySpectrum, seed: int, setup: ParaFlowSetup,
                   fixed: dict[str, float]) -> list[tuple[dict[str, np.ndarray], int]]:  # fmt: skip
    """As :func:`_chunk_plan`, with each photon's plate thickness and distance drawn as the fast engine draws them."""
    simulator = ParaFlowSimulator(setup)
    plan = []
    for i in range(-(-n // chunk_size)):
        rng = np.random.default_rng([seed, i])
        conditions = simulator.draw_conditions(min(chunk_size, n - i * chunk_size), rng, spectrum)
        for name, value in fixed.items():
            conditions[name] = np.full(len(conditions[name]), float(value))
        plan.append((conditions, int(rng.integers(1, 2**31 - 1))))
    return plan


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk_{index:06d}.npz"


def _run_chunk(
    target: Target, index: int, conditions: dict[str, np.ndarray], g4_seed: int, parts: str,
    range_cut_mm: float = PRODUCTION_CUT_MM,
) -> tuple[int, float]:  # fmt: skip
    """Simulate one chunk in this process and save it atomically, with the CPU seconds its showers
    took (Geant4 alone: after the application is built); returns (index, wall seconds)."""
    start = time.perf_counter()
    if isinstance(target, PlanarCalorimeter):
        from calosurrogate.simulate.geant4.planar import planar_calorimeter

        application = planar_calorimeter(target.name)
        cpu = time.process_time()
        clouds = application.simulate(conditions["incident_energies"], conditions["directions"],
                                      conditions["entry_points"], g4_seed)  # fmt: skip
        conditions = {**conditions, "offsets": clouds.offsets}
        showers = clouds.points
    elif isinstance(target, str):
        application = calorimeter(get_detector(target), range_cut_mm=range_cut_mm)
        cpu = time.process_time()
        showers = application.simulate(conditions["incident_energies"], g4_seed)
    else:
        from calosurrogate.simulate.geant4.crystals import crystal_calorimeter

        application = crystal_calorimeter(target)
        cpu = time.process_time()
        showers = application.simulate_windows(conditions, g4_seed)
    cpu = time.process_time() - cpu
    path = _chunk_path(Path(parts), index)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(tmp, "wb") as f:
        np.savez(f, showers=showers.astype(np.float32), cpu_seconds=np.float64(cpu), **conditions)
    os.replace(tmp, path)
    return index, time.perf_counter() - start


def _prepare_parts(parts: Path, manifest: dict, force: bool) -> None:
    prepare_folder(parts, manifest, force, "chunks")
    for stale in parts.glob(".*.partial"):  # a chunk whose writer was killed
        stale.unlink(missing_ok=True)


def simulate_geant4_to_file(
    detector: DetectorDescription,
    n: int,
    out: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    workers: int = 1,
    chunk_size: int = 50,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    range_cut_mm: float = PRODUCTION_CUT_MM,
    rows: tuple[int, int] | None = None,
) -> Path:
    """Simulate ``n`` showers with Geant4 into a CaloChallenge HDF5 file.

    Args:
        detector: A detector with a Geant4 layout (ds2, ds3, ds1-photons).
        n: Number of showers.
        out: Output file; it appears only when every shower is in it.
        spectrum: Incident-energy spectrum (default: the dataset's).
        seed: Seed of the energies and of Geant4 (per chunk, see the module).
        workers: Processes running chunks side by side.
        chunk_size: Showers per chunk (what a killed run can lose).
        force: Replace an existing output (and discard another run's chunks).
        range_cut_mm: Production cut (a cheap simulation takes 10 mm). Runs with one seed and
            other cuts share their primaries row by row (``pairing_index``).
        rows: Only the showers ``[lo, hi)`` of the ``n``-shower run (``lo`` a multiple of
            ``chunk_size``, ``hi`` too or ``n``): a shard, equal to those rows of the whole file.

    The file records the CPU seconds per shower Geant4 spent (``cpu_seconds_per_shower``).

    Raises:
        Geant4Unavailable: Without the pinned bindings or a C++ compiler.
        ValueError: For a detector without a Geant4 layout, or chunks of another run beside ``out``.
    """
    if n < 1 or workers < 1 or chunk_size < 1:
        raise ValueError("n, workers and chunk_size must be at least 1")
    if not range_cut_mm > 0:
        raise ValueError(f"the production cut must be a positive range in mm, got {range_cut_mm}")
    lo, hi = rows or (0, n)
    if not 0 <= lo < hi <= n or lo % chunk_size or (hi % chunk_size and hi != n):
        raise ValueError(f"rows {lo}:{hi} of {n}: a shard starts at a multiple of the chunk size ({chunk_size}) "
                         "and ends at one or at the end")  # fmt: skip
    layout_of(detector)  # before any work: a detector without a layout is refused here
    out = check_output_path(out, force)
    bindings()
    physics_library()  # compile once here, not in every worker at the same time
    spectrum = spectrum or detector.default_spectrum
    spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
    parts = out.parent / f".{out.name}.geant4-parts"
    manifest = {"detector": detector.name, "n": n, "spectrum": spectrum.spec, "seed": seed, "chunk_size": chunk_size,
                "bindings": PINNED, "format": 1}  # fmt: skip
    if range_cut_mm != PRODUCTION_CUT_MM:  # a nominal run's manifest stays as it was: its chunks resume
        manifest["range_cut_mm"] = float(range_cut_mm)
    if rows is not None:
        manifest["rows"] = [lo, hi]
    _prepare_parts(parts, manifest, force)
    # a shard runs its chunks of the whole run's plan (saved under their place in the shard)
    plan = _chunk_plan(n, chunk_size, spectrum, seed)[lo // chunk_size : -(-hi // chunk_size)]
    _run_plan(detector.name, plan, parts, workers, f"geant4 {detector.name}", progress, range_cut_mm)
    attrs = {"generator": "Geant4 (calosurrogate geant4 engine)", "physics": PHYSICS.format(pinned=PINNED, cut=range_cut_mm),
             "detector": detector.name, "energy_spectrum": spectrum.spec, "seed": seed, "chunk_size": chunk_size,
             "range_cut_mm": float(range_cut_mm), "cpu_seconds_per_shower": _cpu_seconds(parts, len(plan)) / (hi - lo)}  # fmt: skip
    with ShowerWriter(
        out, detector.geometry.n_voxels, dtype=dtype, force=force, attrs=attrs, pairing_index=True, first_index=lo
    ) as writer:
        _write_chunks(parts, len(plan), writer)
    return out


def _cpu_seconds(parts: Path, n_chunks: int) -> float:
    """CPU seconds of every chunk together (NaN if a chunk predates their recording)."""
    total = 0.0
    for i in range(n_chunks):
        with np.load(_chunk_path(parts, i)) as chunk:
            total += float(chunk["cpu_seconds"]) if "cpu_seconds" in chunk.files else float("nan")
    return total


def _write_chunks(parts: Path, n_chunks: int, writer: ShowerWriter, conditions: tuple[str, ...] = ()) -> None:
    """Every chunk into the output, in order, then the parts folder away."""
    for i in range(n_chunks):
        with np.load(_chunk_path(parts, i)) as chunk:
            writer.write(chunk["incident_energies"], chunk["showers"], {k: chunk[k] for k in conditions})
    shutil.rmtree(parts, ignore_errors=True)


def _run_plan(
    target: Target, plan: list, parts: Path, workers: int, description: str, progress: bool,
    range_cut_mm: float = PRODUCTION_CUT_MM,
) -> None:  # fmt: skip
    """Run the chunks of ``plan`` that ``parts`` lacks, in ``workers`` processes."""
    todo = [i for i in range(len(plan)) if not _chunk_path(parts, i).exists()]
    n = sum(len(conditions["incident_energies"]) for conditions, _ in plan)
    done = n - sum(len(plan[i][0]["incident_energies"]) for i in todo)
    bar = tqdm(total=n, initial=done, desc=description, unit="shower", disable=not progress)
    if workers == 1 or len(todo) <= 1:
        for i in todo:
            _run_chunk(target, i, plan[i][0], plan[i][1], str(parts), range_cut_mm)
            bar.update(len(plan[i][0]["incident_energies"]))
    else:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            pending = {
                pool.submit(_run_chunk, target, i, plan[i][0], plan[i][1], str(parts), range_cut_mm) for i in todo
            }
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, _ = future.result()
                    bar.update(len(plan[index][0]["incident_energies"]))
    bar.close()


def simulate_paraflow_geant4_to_file(
    n: int,
    out: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    fixed: dict[str, float] | None = None,
    setup: ParaFlowSetup | None = None,
    workers: int = 1,
    chunk_size: int = 50,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate ``n`` ParaFlow photons with Geant4 (:mod:`.crystals`) into a file laid out as the
    fast engine's: ``incident_energies`` (MeV), ``showers`` (the 8 x 16 window, MeV),
    ``plate_thickness`` (X0) and ``plate_distance`` (cm), drawn per photon as the fast engine
    draws them (``fixed`` holds some at one value). Chunked and resumable as
    :func:`simulate_geant4_to_file`.
    """
    if n < 1 or workers < 1 or chunk_size < 1:
        raise ValueError("n, workers and chunk_size must be at least 1")
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"paraflow: no condition {sorted(unknown)}; its plate conditions are {list(CONDITIONS)}")
    setup = setup or ParaFlowSetup()
    out = check_output_path(out, force)
    bindings()
    physics_library()
    spectrum = (
        EnergySpectrum.parse(spectrum or setup.default_spectrum)
        if not isinstance(spectrum, EnergySpectrum)
        else spectrum
    )
    parts = out.parent / f".{out.name}.geant4-parts"
    manifest = {"detector": "paraflow", "n": n, "spectrum": spectrum.spec, "seed": seed, "chunk_size": chunk_size,
                "bindings": PINNED, "format": 2, "fixed": fixed, "setup": repr(setup)}  # fmt: skip
    _prepare_parts(parts, manifest, force)
    plan = _paraflow_plan(n, chunk_size, spectrum, seed, setup, fixed)
    _run_plan(setup, plan, parts, workers, "geant4 paraflow", progress)
    attrs = {"generator": "Geant4 (calosurrogate geant4 engine; ParaFlow set-up)",
             "physics": PHYSICS.format(pinned=PINNED, cut=PRODUCTION_CUT_MM) + "; 4 T uniform field; crystal "
             "photostatistics added as in the fast engine", "detector": setup.name, "energy_spectrum": spectrum.spec,
             "seed": seed, "chunk_size": chunk_size, "plate_thickness_unit": "X0 of iron", "plate_distance_unit": "cm",
             "fixed_conditions": str(fixed), "plate_thickness_range_x0": setup.thickness_range_x0,
             "plate_distance_range_cm": setup.distance_range_cm, "held_out": str(list(setup.held_out))}  # fmt: skip
    with ShowerWriter(out, setup.window.n_voxels, dtype=dtype, force=force, condition_dims=dict.fromkeys(CONDITIONS, 1),
                      attrs=attrs) as writer:  # fmt: skip
        _write_chunks(parts, len(plan), writer, CONDITIONS)
    return out


def simulate_points_geant4_to_file(
    geometry: PlanarCalorimeter,
    n: int,
    out: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    workers: int = 1,
    chunk_size: int = 20,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate ``n`` photons in a planar calorimeter with Geant4 (:mod:`.planar`) into a point-cloud
    file, their energies, directions and entry points drawn as the fast engine draws them (chunk
    ``i`` from ``(seed, i)``). Chunked and resumable as :func:`simulate_geant4_to_file`."""
    from calosurrogate.data.points import PointClouds, PointCloudWriter

    if n < 1 or workers < 1 or chunk_size < 1:
        raise ValueError("n, workers and chunk_size must be at least 1")
    out = check_output_path(out, force)
    bindings()
    physics_library()
    spectrum = EnergySpectrum.parse(spectrum or DEFAULT_SPECTRUM) if not isinstance(spectrum, EnergySpectrum) \
        else spectrum  # fmt: skip
    parts = out.parent / f".{out.name}.geant4-parts"
    manifest = {"detector": geometry.name, "n": n, "spectrum": spectrum.spec, "seed": seed, "chunk_size": chunk_size,
                "bindings": PINNED, "format": 3}  # fmt: skip
    _prepare_parts(parts, manifest, force)
    draw = PointShowerSimulator(geometry)
    plan = []
    for i in range(-(-n // chunk_size)):
        rng = np.random.default_rng([seed, i])
        energies, directions, entry = draw.conditions(min(chunk_size, n - i * chunk_size), spectrum, rng)
        plan.append(({"incident_energies": energies, "directions": directions, "entry_points": entry},
                     int(rng.integers(1, 2**31 - 1))))  # fmt: skip
    _run_plan(geometry, plan, parts, workers, f"geant4 {geometry.name}", progress)
    attrs = {"generator": "Geant4 (calosurrogate geant4 engine; Si step deposits merged in sub-cells)",
             "physics": PHYSICS.format(pinned=PINNED, cut=PRODUCTION_CUT_MM), "particle": "photon",
             "energy_spectrum": spectrum.spec, "seed": seed, "chunk_size": chunk_size,
             "cpu_seconds_per_shower": _cpu_seconds(parts, len(plan)) / n}  # fmt: skip
    with PointCloudWriter(out, geometry, force=force, attrs=attrs) as writer:
        for i in range(len(plan)):
            with np.load(_chunk_path(parts, i)) as chunk:
                writer.write(PointClouds(chunk["incident_energies"], chunk["directions"], chunk["entry_points"],
                                         chunk["offsets"], chunk["showers"]))  # fmt: skip
    shutil.rmtree(parts, ignore_errors=True)
    return out
