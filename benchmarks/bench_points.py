"""CaloClouds on ild-ecal (issue 23): quality of the one-step student and the teacher, inclusive and at
fixed energies, on 5 mm and 10 mm cells, and time per shower on one thread against the fast engine.

Needs a trained run (``calo train --model caloclouds --data WORK/train.h5 --out WORK/run``) and the
reference file WORK/reference.h5 (``calo simulate --geometry ild-ecal --seed 2``). Fixed-energy
references (random angles) are simulated here into WORK/fixed_E.h5. Generated files are kept in WORK.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_points.py [--workdir benchmarks/work/ild]
     [--n 6000] [--n-fixed 1000] [--teacher-steps 16] [--teacher-precision bf16]
Results: benchmarks/results/points_ild.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from _common import RESULTS, write_result

from calosurrogate.data.points import PointCloudFile, project
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.evaluation.points import evaluate_point_clouds
from calosurrogate.geometry import ild_ecal
from calosurrogate.models.caloclouds import load_caloclouds
from calosurrogate.simulate.points import PointShowerSimulator, simulate_points_to_file

FIXED_GEV = (10, 50, 90)


def _quality(reference, generated, geometry, cell_mm=None) -> dict:
    result = evaluate_point_clouds(reference, generated, geometry, cell_mm)
    return {"jsd": result.jsd, "angles": result.angles, "settings": result.settings}


def _generate(
    model,
    conditions,
    steps: int | None,
    batch: int = 500,
    seed: int = 0,
    calibrated: bool = True,
    precision: str = "fp32",
):
    from calosurrogate.data.points import PointClouds

    parts = [model.sample(conditions.incident_energies[lo : lo + batch], conditions.directions[lo : lo + batch],
                          conditions.entry_points[lo : lo + batch], steps=steps, seed=seed + k,
                          calibrated=calibrated, precision=precision)
             for k, lo in enumerate(range(0, len(conditions), batch))]  # fmt: skip
    return PointClouds.concatenate(parts)


def _realism(work: Path, geometry) -> dict:
    """The fast engine's showers at the Geant4 sample's conditions, judged against Geant4's."""
    with PointCloudFile(work / "geant4_2000.h5") as f:
        g4 = f.read()
    fast = PointShowerSimulator(geometry).simulate(g4.incident_energies, g4.directions, g4.entry_points,
                                                   np.random.default_rng(11))  # fmt: skip
    return _quality(g4, fast, geometry)


def training_log(run: Path) -> list[dict]:
    """The run's training log, with the rows of the stages it took from the run it started from
    (``train.from_run``) put first, so that every stage's budget is on record."""
    about = json.loads((run / "train.json").read_text())
    source = about["train_config"].get("from_run")
    if not source:
        return about["log"]
    source = Path(source)
    taken = [
        row
        for row in training_log(source if source.is_dir() else source.parent)
        if row["stage"] not in about["train_config"].get("retrain", ["student"]) and row["stage"] != "calibration"
    ]
    return taken + about["log"]


def _time_per_shower(fn, n_calls: int, batch: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(n_calls):
        fn()
    return (time.perf_counter() - start) / (n_calls * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="benchmarks/work/ild")
    parser.add_argument("--n", type=int, default=6000, help="reference showers judged (inclusive)")
    parser.add_argument("--n-fixed", type=int, default=1000)
    parser.add_argument("--teacher-steps", type=int, default=16)
    parser.add_argument("--teacher-precision", default="bf16", help="the teacher's 31 passes in fp32 take ~30 min")
    parser.add_argument("--run", default="run", help="the run folder in WORK")
    parser.add_argument("--tag", default="", help="results/points_ild_TAG.json")
    parser.add_argument("--skip-teacher", action="store_true", help="judge the student alone (another run's teacher)")
    parser.add_argument(
        "--realism-only",
        action="store_true",
        help="only add the fast engine against WORK/geant4_2000.h5 to an existing result",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.workdir)
    geometry = ild_ecal()
    if args.realism_only:
        path = RESULTS / "points_ild.json"
        results = json.loads(path.read_text())
        results["quality"]["fast-engine-vs-geant4/inclusive/5mm"] = _realism(work, geometry)
        path.write_text(json.dumps(results, indent=2))
        print(f"updated {path}")
        return
    model = load_caloclouds(work / args.run / "model.pt")
    with PointCloudFile(work / "reference.h5") as f:
        reference = f.read(0, args.n)
    results: dict = {
        "n_reference": len(reference),
        "teacher_steps": args.teacher_steps,
        "teacher_precision": args.teacher_precision,
        "quality": {},
    }

    samples = {"student": _generate(model, reference, 0)}
    if not args.skip_teacher:
        samples["teacher"] = _generate(model, reference, args.teacher_steps, precision=args.teacher_precision)
    # the calibration's ablation: the student without its occupancy and energy factors
    uncalibrated = _generate(model, reference, 0, calibrated=False)
    results["quality"]["student_uncalibrated/inclusive/5mm"] = _quality(reference, uncalibrated, geometry)
    # bf16's cost in quality beside its speed
    bf16 = _generate(model, reference, 0, precision="bf16")
    results["quality"]["student_bf16/inclusive/5mm"] = _quality(reference, bf16, geometry)
    for name in samples:
        results["quality"][f"{name}/inclusive/5mm"] = _quality(reference, samples[name], geometry)
        results["quality"][f"{name}/inclusive/10mm"] = _quality(reference, samples[name], geometry, 10.0)
        print(name, {k: round(v["value"], 4) for k, v in results["quality"][f"{name}/inclusive/5mm"]["jsd"].items()},
              flush=True)  # fmt: skip
    for energy in FIXED_GEV:
        path = work / f"fixed_{energy}.h5"
        if not path.exists():
            simulate_points_to_file(geometry, args.n_fixed, path, f"fixed:{energy}GeV", seed=100 + energy,
                                    progress=False)  # fmt: skip
        with PointCloudFile(path) as f:
            fixed = f.read()
        for name, steps, precision in (("student", 0, "fp32"), ("teacher", args.teacher_steps, args.teacher_precision)):
            if name not in samples:
                continue
            generated = _generate(model, fixed, steps, precision=precision)
            results["quality"][f"{name}/{energy}GeV/5mm"] = _quality(fixed, generated, geometry)

    # time per shower at 50 GeV, random angles, one thread, projection and half-MIP cut included
    rng = np.random.default_rng(5)
    sim = PointShowerSimulator(geometry)
    timing = {}
    for batch in (1, 100):
        e, d, p = sim.conditions(batch, EnergySpectrum.parse("fixed:50GeV"), rng)
        n_calls = 200 if batch == 1 else 5

        def student(e=e, d=d, p=p):
            return project(model.sample(e, d, p, steps=0), geometry).above(geometry.mip_mev / 2)

        def student_bf16(e=e, d=d, p=p):
            return project(model.sample(e, d, p, steps=0, precision="bf16"), geometry).above(geometry.mip_mev / 2)

        def teacher(e=e, d=d, p=p):
            sample = model.sample(e, d, p, steps=args.teacher_steps, precision=args.teacher_precision)
            return project(sample, geometry).above(geometry.mip_mev / 2)

        def engine(e=e, d=d, p=p):
            return project(sim.simulate(e, d, p, rng), geometry).above(geometry.mip_mev / 2)

        timing[f"batch_{batch}"] = {
            "student_ms": 1e3 * _time_per_shower(student, n_calls, batch),
            "student_bf16_ms": 1e3 * _time_per_shower(student_bf16, n_calls, batch),
            "fast_engine_ms": 1e3 * _time_per_shower(engine, n_calls, batch),
        }
        if not args.skip_teacher:
            timing[f"batch_{batch}"]["teacher_ms"] = 1e3 * _time_per_shower(teacher, max(1, n_calls // 20), batch)
        print(batch, timing[f"batch_{batch}"], flush=True)
    # Geant4 at 50 GeV (its CPU seconds per shower, recorded in the file; Python scorer included)
    g4_file = work / "geant4_50GeV_timing.h5"
    if not g4_file.exists():
        subprocess.run([sys.executable, "-m", "calosurrogate", "simulate", "--geometry", "ild-ecal", "--engine", "geant4",
                        "--n", "20", "--energy", "fixed:50GeV", "--seed", "9", "--out", str(g4_file), "--quiet"],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    with h5py.File(g4_file) as f:
        timing["geant4_cpu_ms_50GeV"] = 1e3 * float(f.attrs["cpu_seconds_per_shower"])
    results["timing_50GeV_one_thread"] = timing
    if (work / "geant4_2000.h5").exists():
        results["quality"]["fast-engine-vs-geant4/inclusive/5mm"] = _realism(work, geometry)
    results["train"] = training_log(work / args.run)
    results["model_config"] = json.loads((work / args.run / "train.json").read_text())["model_config"]
    path = write_result(
        f"points_ild{'_' + args.tag if args.tag else ''}",
        results,
        "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(sys.argv),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
