"""Evaluation speed: every metric but the classifiers, then the classifiers, on two simulator files.

Also records the 'Done when' check of the evaluation: two files of the same settings give a
classifier AUC near 0.5, and a copy with energies scaled by 1.05 is flagged in E_tot/E_inc.

Run: .venv/bin/python benchmarks/bench_evaluation.py [--n 100000] [--geometry ds2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.data import ShowerFile, ShowerWriter
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.simulate import get_detector, simulate_to_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--workdir", default=None, help="Keep the simulated files here (default: a temporary folder).")
    args = parser.parse_args()
    detector = get_detector(args.geometry)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ref, gen, scaled = work / "reference.h5", work / "generated.h5", work / "scaled.h5"
        if not ref.exists():
            simulate_to_file(detector, args.n, ref, seed=1)
        if not gen.exists():
            simulate_to_file(detector, args.n, gen, seed=2)
        if not scaled.exists():
            with ShowerFile(gen) as f, ShowerWriter(scaled, f.n_voxels) as w:
                for batch in f.iter_chunks(10_000):
                    w.write(batch.incident_energies, batch.showers * 1.05)
        timings = {}
        start = time.perf_counter()
        no_cls = evaluate_files(
            ref, gen, detector.geometry, EvaluationSettings(metrics=("histograms", "fpd", "kpd", "cfd"))
        )
        timings["all_but_classifiers_s"] = round(time.perf_counter() - start, 1)
        settings = EvaluationSettings(metrics=("cls-high", "cls-low"))
        settings.classifier = type(settings.classifier).cpu(runs=3)
        start = time.perf_counter()
        cls = evaluate_files(ref, gen, detector.geometry, settings)
        timings["classifiers_high_and_low_3_runs_each_s"] = round(time.perf_counter() - start, 1)
        distorted = evaluate_files(ref, scaled, detector.geometry, EvaluationSettings(metrics=("histograms",)))
    same = {
        "auc_high": cls.classifiers["cls-high"]["auc"], "auc_high_std": cls.classifiers["cls-high"]["auc_std"],
        "auc_low": cls.classifiers["cls-low"]["auc"], "auc_low_std": cls.classifiers["cls-low"]["auc_std"],
        "separation_etot_einc": no_cls.separation["E_tot/E_inc"]["value"],
        "separation_etot_einc_floor": no_cls.separation["E_tot/E_inc"]["floor"],
        **{k: {"value": v["value"], "error": v["error"], "floor": v.get("floor")} for k, v in no_cls.scalars.items()},
    }  # fmt: skip
    data = {"geometry": args.geometry, "n_showers_each": args.n, "timings": timings, "same_settings": same,
            "scaled_by_1.05": {"separation_etot_einc": distorted.separation["E_tot/E_inc"]["value"]},
            "classifier_settings": cls.settings["classifier"]}  # fmt: skip
    print(data)
    print(
        "wrote",
        write_result(
            f"evaluation_{args.geometry}",
            data,
            f"python benchmarks/bench_evaluation.py --n {args.n} --geometry {args.geometry}",
        ),
    )


if __name__ == "__main__":
    main()
