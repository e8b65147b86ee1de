"""The realism gap: the fast engine against Geant4 on the same detector (issue 21).

At fixed energies: mean longitudinal and radial profiles (largest relative difference over the
layers and radial bins holding 1% or more of the energy), resolution, and zero-voxel fraction.
Over a log-uniform spectrum: the high-level classifier AUC (Geant4 vs fast engine) and the
separation power of every high-level feature. The Geant4 files are kept in --workdir, so a
calibration can reuse them; the fast engine's are made afresh every run. ``--published`` judges
the engine with the published GFlash coefficients (before calibration), else with those it ships.

Run: .venv/bin/python benchmarks/bench_realism_gap.py [--geometry ds2] [--workers 2] [--workdir DIR] [--published] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.data import read_showers
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import default_min_energy
from calosurrogate.metrics import ClassifierSettings, apply_threshold
from calosurrogate.simulate import get_detector, simulate_to_file
from calosurrogate.simulate.detectors import uncalibrated
from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file


def _profiles(path: Path, geometry) -> dict[str, np.ndarray]:
    batch = read_showers(path)
    x = apply_threshold(batch.showers.astype(np.float64), default_min_energy(geometry))
    e_inc = batch.incident_energies.reshape(-1)
    layers = np.stack([x[:, geometry.layer_slice(i)].sum(1) for i in range(geometry.n_layers)], axis=1)
    radial = x.reshape(len(x), *geometry.shape).sum(axis=(1, 2))
    total = x.sum(1)
    return {
        "longitudinal": (layers / e_inc[:, None]).mean(0),
        "radial": (radial / e_inc[:, None]).mean(0),
        "resolution": float(total.std(ddof=1) / total.mean()),
        "response": float((total / e_inc).mean()),
        "zero_voxels": float((x == 0).mean()),
    }


def _largest_relative_difference(fast: np.ndarray, geant4: np.ndarray, share: float = 0.01) -> float:
    """max |fast / geant4 - 1| over the bins that hold at least ``share`` of Geant4's energy."""
    keep = geant4 >= share * geant4.sum()
    return float(np.max(np.abs(fast[keep] / geant4[keep] - 1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the Geant4 files here.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--published", action="store_true", help="the published GFlash coefficients (uncalibrated)")
    args = parser.parse_args()
    detector = get_detector(args.geometry)
    if args.published:
        detector = uncalibrated(detector)
    geometry = detector.geometry
    scale = 0.2 if args.quick else 1.0
    fixed = {1_000: 400, 10_000: 200, 100_000: 40}
    spectrum_n = int(2000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ours = Path(tmp)
        per_energy = {}
        for energy, n in fixed.items():
            n = max(10, int(n * scale))
            g4 = work / f"geant4_{energy}MeV_{n}.h5"
            fast = ours / f"fast_{energy}MeV_{n}.h5"
            if not g4.exists():
                simulate_geant4_to_file(detector, n, g4, f"fixed:{energy}MeV", seed=11, workers=args.workers,
                                        chunk_size=max(5, n // 8), progress=False)  # fmt: skip
            if not fast.exists():
                simulate_to_file(detector, n, fast, f"fixed:{energy}MeV", seed=11, progress=False)
            a, b = _profiles(g4, geometry), _profiles(fast, geometry)
            per_energy[f"{energy / 1e3:g} GeV"] = {
                "showers": n,
                "longitudinal_max_rel_diff": _largest_relative_difference(b["longitudinal"], a["longitudinal"]),
                "radial_max_rel_diff": _largest_relative_difference(b["radial"], a["radial"]),
                "resolution": {"geant4": a["resolution"], "fast": b["resolution"]},
                "response": {"geant4": a["response"], "fast": b["response"]},
                "zero_voxels": {"geant4": a["zero_voxels"], "fast": b["zero_voxels"]},
            }
            print(energy, per_energy[f"{energy / 1e3:g} GeV"], flush=True)
        spectrum = "log-uniform:1GeV:100GeV"
        g4 = work / f"geant4_spectrum_{spectrum_n}.h5"
        fast = ours / f"fast_spectrum_{spectrum_n}.h5"
        if not g4.exists():
            simulate_geant4_to_file(detector, spectrum_n, g4, spectrum, seed=12, workers=args.workers,
                                    chunk_size=50, progress=False)  # fmt: skip
        if not fast.exists():
            simulate_to_file(detector, spectrum_n, fast, spectrum, seed=12, progress=False)
        settings = EvaluationSettings.fast(metrics=("histograms", "cls-high"), progress=False,
                                           classifier=ClassifierSettings.cpu(runs=3))  # fmt: skip
        result = evaluate_files(g4, fast, geometry, settings)
    separation = sorted(((k, v["value"], v.get("floor")) for k, v in result.separation.items()), key=lambda t: -t[1])
    data = {
        "geometry": args.geometry, "per_energy": per_energy,
        "spectrum": {"spectrum": spectrum, "showers_each": spectrum_n,
                     "auc_high": result.classifiers["cls-high"]["auc"], "auc_high_std": result.classifiers["cls-high"]["auc_std"],
                     "separation_largest": separation[:10],
                     "separation_median": float(np.median([s for _, s, _ in separation]))},
        "calibration": "before calibration: published GFlash coefficients" if args.published
                       else "after calibration: coefficients fitted to Geant4",
    }  # fmt: skip
    print(data)
    command = f"python benchmarks/bench_realism_gap.py --geometry {args.geometry} --workers {args.workers}"
    command += " --published" * args.published + " --quick" * args.quick
    name = f"realism_gap_{args.geometry}_{'published' if args.published else 'fitted'}"
    print("wrote", write_result(name, data, command))


if __name__ == "__main__":
    main()
