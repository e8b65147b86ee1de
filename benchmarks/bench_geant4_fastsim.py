"""A trained surrogate inside Geant4 as its fast-simulation model (issue 21): time per event of
full and fast simulation of the same events, and the fast output judged against the full one.

Fixed energies (10 and 100 GeV electrons): the surrogate runs once per event, as Geant4's Par04
example runs its model, and once per batch of events. Over a spectrum: the two outputs judged
(high-level classifier, FPD, KPD, separation powers). Both modes run in one Geant4 application
(the calorimeter inside the fast-simulation envelope), the surrogate on one CPU process.

Run: .venv/bin/python benchmarks/bench_geant4_fastsim.py --run RUN [--n-fixed 50] [--n-spectrum 2000]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.models import load_surrogate
from calosurrogate.sampling.geant4_fastsim import simulate_full_and_fast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True, help="run folder or model.pt (ds2, incident energy only)")
    parser.add_argument("--n-fixed", type=int, default=50)
    parser.add_argument("--n-spectrum", type=int, default=2000)
    parser.add_argument("--spectrum", default="log-uniform:1GeV:100GeV")
    parser.add_argument("--tag", default="")
    parser.add_argument("--trained-on", default="unknown", help="what the model was trained on (for the record)")
    args = parser.parse_args()
    model = load_surrogate(args.run / "model.pt" if args.run.is_dir() else args.run)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for energy, per_call in (("10GeV", 1), ("100GeV", 1), ("100GeV", args.n_fixed)):
            run = simulate_full_and_fast(model, args.n_fixed, Path(tmp) / f"{energy}_{per_call}", f"fixed:{energy}",
                                         seed=3, events_per_call=per_call)  # fmt: skip
            rows.append({"energy": energy} | {k: v for k, v in run.as_dict().items() if k not in ("full", "fast")})
            print(rows[-1], flush=True)
        run = simulate_full_and_fast(model, args.n_spectrum, Path(tmp) / "spectrum", args.spectrum, seed=4,
                                     events_per_call=100)  # fmt: skip
        spectrum_row = {k: v for k, v in run.as_dict().items() if k not in ("full", "fast")}
        n = args.n_spectrum  # the quick-look FPD/KPD sizes, capped by the events there are
        settings = dataclasses.replace(EvaluationSettings.fast(), metrics=("histograms", "fpd", "kpd", "cls-high"),
                                       classifier=ClassifierSettings.cpu(runs=3), progress=False,
                                       fpd_min_samples=min(2000, n // 2), fpd_max_samples=min(10_000, n),
                                       kpd_batch_size=min(2000, n))  # fmt: skip
        result = evaluate_files(run.full, run.fast, model.geometry, settings)
    separation = sorted(((k, v["value"]) for k, v in result.separation.items()), key=lambda t: -t[1])
    data = {
        "geometry": model.geometry.name, "model": model.family, "model_file": str(args.run),
        "model_trained_on": args.trained_on, "tag": args.tag, "fixed": rows,
        "spectrum": spectrum_row | {"spectrum": args.spectrum, "auc_high": result.classifiers["cls-high"]["auc"],
                                    "auc_high_std": result.classifiers["cls-high"]["auc_std"],
                                    "fpd_x1e3": result.scalars["FPD x 1e3"]["value"],
                                    "kpd_x1e3": result.scalars["KPD x 1e3"]["value"],
                                    "separation_largest": separation[:5]},
    }  # fmt: skip
    print(data)
    command = " ".join(["python benchmarks/bench_geant4_fastsim.py", *sys.argv[1:]])
    name = "geant4_fastsim_" + model.geometry.name + (f"_{args.tag}" if args.tag else "")
    print("wrote", write_result(name, data, command))


if __name__ == "__main__":
    main()
