"""The realism gap: the fast engine against Geant4 on the same detector (issue 21).

At fixed energies: mean longitudinal and radial profiles (largest relative difference over the
layers and radial bins holding 1% or more of the energy, with its standard error), resolution,
and zero-voxel fraction. The Geant4 files at fixed energies are given (--geant4-fixed: they must
not be those the engine was calibrated on) or small ones are made.
Over a log-uniform spectrum: the high-level classifier AUC (Geant4 vs fast engine) and the
separation power of every high-level feature. The Geant4 files are kept in --workdir, so a
calibration can reuse them; the fast engine's are made afresh every run. ``--published`` judges
the engine with the published GFlash coefficients (before calibration), else with those it ships.

Run: .venv/bin/python benchmarks/bench_realism_gap.py [--geometry ds2] [--workers 2] [--workdir DIR] [--published] [--quick]
    [--geant4-fixed FILE ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import judged_ratios, mean_profiles, write_result

from calosurrogate.data import read_showers
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.simulate import ShowerSimulator, get_detector, simulate_to_file
from calosurrogate.simulate.detectors import uncalibrated
from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file

ENGINE_SHOWERS = 20_000


def _largest_relative_difference(fast: dict, geant4: dict, kind: str, share: float = 0.01) -> dict[str, float]:
    """max |fast / geant4 - 1| over the bins that hold at least ``share`` of Geant4's energy, its
    standard error there (both samples' means), and how many of those bins differ by more than
    two standard errors."""
    keep, ratio = judged_ratios(fast[kind], geant4[kind], share)
    se = ratio * np.hypot(fast[f"{kind}_se"][keep] / fast[kind][keep], geant4[f"{kind}_se"][keep] / geant4[kind][keep])
    worst = int(np.argmax(np.abs(ratio - 1)))
    return {"value": float(ratio[worst] - 1), "se": float(se[worst]), "bin": int(np.flatnonzero(keep)[worst]),
            "bins": int(keep.sum()), "bins_beyond_2se": int(np.sum(np.abs(ratio - 1) > 2 * se))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the Geant4 files here.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--published", action="store_true", help="the published GFlash coefficients (uncalibrated)")
    parser.add_argument("--geant4-fixed", type=Path, nargs="*", default=[],
                        help="Geant4 files at one energy each to judge the profiles on (else small ones are made)")  # fmt: skip
    args = parser.parse_args()
    detector = get_detector(args.geometry)
    if args.published:
        detector = uncalibrated(detector)
    geometry = detector.geometry
    scale = 0.2 if args.quick else 1.0
    spectrum_n = int(2000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ours = Path(tmp)
        fixed_files = list(args.geant4_fixed)
        if not fixed_files:
            for energy, n in {1_000: 400, 10_000: 200, 100_000: 40}.items():
                n = max(10, int(n * scale))
                fixed_files.append(work / f"geant4_{energy}MeV_{n}.h5")
                if not fixed_files[-1].exists():
                    simulate_geant4_to_file(detector, n, fixed_files[-1], f"fixed:{energy}MeV", seed=11, workers=args.workers,
                                            chunk_size=max(5, n // 8), progress=False)  # fmt: skip
        per_energy = {}
        for path in fixed_files:
            batch = read_showers(path)
            energies = batch.incident_energies.reshape(-1)
            if np.ptp(energies) > 0:
                sys.exit(
                    f"{path}: --geant4-fixed takes files at one energy, this one spans {energies.min():g}-{energies.max():g} MeV"
                )
            a = mean_profiles(batch.showers, energies, geometry)
            # the engine's sample is large, so that the difference's error is mostly Geant4's
            e_fast = np.full(max(len(energies), ENGINE_SHOWERS), float(energies[0]))
            b = mean_profiles(ShowerSimulator(detector).simulate(e_fast, np.random.default_rng(11)), e_fast, geometry)
            per_energy[f"{energies[0] / 1e3:g} GeV"] = {
                "showers": {"geant4": len(energies), "fast": len(e_fast)}, "geant4_file": path.name,
                "longitudinal": _largest_relative_difference(b, a, "longitudinal"),
                "radial": _largest_relative_difference(b, a, "radial"),
                "resolution": {"geant4": a["resolution"], "fast": b["resolution"]},
                "resolution_central": {"geant4": a["resolution_central"], "fast": b["resolution_central"]},
                "response": {"geant4": a["response"], "fast": b["response"]},
                "zero_voxels": {"geant4": a["zero_voxels"], "fast": b["zero_voxels"]},
            }  # fmt: skip
            print(path.name, per_energy[f"{energies[0] / 1e3:g} GeV"], flush=True)
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
                       else "after calibration: coefficients and profile tables fitted to Geant4",
    }  # fmt: skip
    print(data)
    command = f"python benchmarks/bench_realism_gap.py --geometry {args.geometry} --workers {args.workers}"
    command += " --published" * args.published + " --quick" * args.quick
    command += (" --workdir " + str(args.workdir)) * bool(args.workdir)
    command += (" --geant4-fixed " + " ".join(map(str, args.geant4_fixed))) * bool(args.geant4_fixed)
    name = f"realism_gap_{args.geometry}_{'published' if args.published else 'fitted'}"
    print("wrote", write_result(name, data, command))


if __name__ == "__main__":
    main()
