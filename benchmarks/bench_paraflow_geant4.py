"""The fast engine's ParaFlow set-up against Geant4's (issue 22): mean shower shapes at a few plate
configurations, each with its standard error, and their relative difference.

Geant4 files are made once in --workdir (chunked: a killed run resumes).

Run: .venv/bin/python benchmarks/bench_paraflow_geant4.py --n-geant4 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.metrics.crystal_shapes import crystal_shower_shapes
from calosurrogate.simulate.geant4.engine import simulate_paraflow_geant4_to_file
from calosurrogate.simulate.paraflow import simulate_paraflow_to_file

CONFIGURATIONS = ((0.5, 50.0), (1.0, 70.0), (1.5, 90.0))  # (d X0, b cm)


def _shapes(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        images = f["showers"][:].reshape(-1, 8, 16).astype(float)
        energies = f["incident_energies"][:].ravel()
    shapes = crystal_shower_shapes(images)
    shapes["brightest"] = shapes["brightest"] / energies  # a fraction: the energies differ per photon
    shapes["second_brightest"] = shapes["second_brightest"] / energies
    shapes["window_fraction"] = images.sum((1, 2)) / energies
    shapes["tagged_converted"] = (shapes["r9"] < 0.94).astype(float)
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-geant4", type=int, default=200, help="Geant4 photons per configuration")
    parser.add_argument("--n-fast", type=int, default=20_000, help="fast-engine photons per configuration")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workdir", default="benchmarks/work/paraflow-geant4")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (d, b) in enumerate(CONFIGURATIONS):
        fixed = {"plate_thickness": d, "plate_distance": b}
        g4, fast = work / f"geant4_{d}_{b}.h5", work / f"fast_{d}_{b}.h5"
        start = time.perf_counter()
        if not g4.exists():
            simulate_paraflow_geant4_to_file(args.n_geant4, g4, seed=500 + i, fixed=fixed, workers=args.workers,
                                             chunk_size=25, progress=False)  # fmt: skip
            print(f"d={d} b={b}: Geant4 {args.n_geant4} photons in {time.perf_counter() - start:.0f} s", flush=True)
        if not fast.exists():
            simulate_paraflow_to_file(args.n_fast, fast, seed=600 + i, fixed=fixed, progress=False)
        reference, engine = _shapes(g4), _shapes(fast)
        row = {"plate_thickness": d, "plate_distance": b, "geant4_photons": len(reference["width"]),
               "fast_photons": len(engine["width"]), "shapes": {}}  # fmt: skip
        for name in reference:
            r, e = reference[name], engine[name]
            r_mean, r_err = float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))
            e_mean, e_err = float(e.mean()), float(e.std(ddof=1) / np.sqrt(len(e)))
            row["shapes"][name] = {"geant4": r_mean, "geant4_error": r_err, "fast": e_mean, "fast_error": e_err,
                                   "relative_difference": e_mean / r_mean - 1,
                                   "pull": (e_mean - r_mean) / float(np.hypot(r_err, e_err))}  # fmt: skip
        rows.append(row)
        print(d, b, {k: round(v["relative_difference"], 3) for k, v in row["shapes"].items()}, flush=True)
    command = " ".join(["python benchmarks/bench_paraflow_geant4.py", *sys.argv[1:]])
    print("wrote", write_result("paraflow_geant4", {"configurations": rows}, command))


if __name__ == "__main__":
    main()
