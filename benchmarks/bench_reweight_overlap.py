"""Where reweighting can correct a cheap simulation (issue 25): the fast engine's cheap mode at several
spot factors, each reweighted toward nominal by each classifier, judged against an independent
nominal file.

A weight is a density ratio, so reweighting can only move showers the two simulations share: the
further apart they are, the more a few showers carry the sample and the smaller its effective size.
Per spot factor: the classifier's AUC when fitting the weights, the effective sample size, the
share of high-level separation powers within 2x their floor (nominal half against half) before
and after weighting, and the judging classifier's AUC (cls-high, cpu preset) of the weighted sample.

Files: --workdir/nominal_fit.h5, nominal_judge.h5 (seeds 101, 103) and cheap_test_F.h5 (seed 102),
made when missing; each row is kept in row_F_CLASSIFIER.json (a killed run resumes).

Run: .venv/bin/python benchmarks/bench_reweight_overlap.py --spot-factors 1.05 1.1 1.25
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result
from bench_correction import GEOMETRY, HIGH_LEVEL

from calosurrogate.correction import ReweightSettings, reweight_files
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import get_geometry
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.simulate import get_detector, simulate_to_file
from calosurrogate.simulate.detectors import cheap


def judged(reference: Path, generated: Path, weights: np.ndarray | None, n: int) -> dict:
    """High-level separation powers over their floors and the cls-high AUC of a (weighted) file."""
    settings = EvaluationSettings(metrics=("histograms", "cls-high"), classifier=ClassifierSettings.cpu(runs=1),
                                  max_showers=n, progress=False)  # fmt: skip
    result = evaluate_files(reference, generated, get_geometry(GEOMETRY), settings, generated_weights=weights)
    ratios = {k: v["value"] / v["floor"] for k, v in result.separation.items()
              if k.startswith(HIGH_LEVEL) and "@" not in k and v.get("floor")}  # fmt: skip
    worst = sorted(ratios.items(), key=lambda kv: -kv[1])[:3]
    return {"within_2x_floor": sum(r <= 2 for r in ratios.values()) / len(ratios), "observables": len(ratios),
            "worst": [{"observable": k, "ratio": round(r, 2)} for k, r in worst],
            "auc_high": result.classifiers["cls-high"]["auc"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spot-factors", type=float, nargs="+", default=[1.05, 1.1, 1.25])
    parser.add_argument("--classifiers", nargs="+", default=["network", "boosted"])
    parser.add_argument("--n", type=int, default=20_000, help="showers per file")
    parser.add_argument("--workdir", default="benchmarks/work/reweight-overlap")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    detector, geometry = get_detector(GEOMETRY), get_geometry(GEOMETRY)
    nominal_fit, nominal_judge = work / "nominal_fit.h5", work / "nominal_judge.h5"
    for path, seed in ((nominal_fit, 101), (nominal_judge, 103)):
        if not path.exists():
            simulate_to_file(detector, args.n, path, seed=seed, progress=False)
    rows = []
    for factor in args.spot_factors:
        cheap_path = work / f"cheap_test_{factor:g}.h5"
        if not cheap_path.exists():
            simulate_to_file(cheap(detector, factor), args.n, cheap_path, seed=102, progress=False)
        cached = work / f"row_{factor:g}_unweighted.json"
        if not cached.exists():
            cached.write_text(json.dumps({"spot_factor": factor, "classifier": None,
                                          "judged": judged(nominal_judge, cheap_path, None, args.n)}))  # fmt: skip
        unweighted = json.loads(cached.read_text())
        rows.append(unweighted)
        for classifier in args.classifiers:
            cached = work / f"row_{factor:g}_{classifier}.json"
            if not cached.exists():
                start = time.perf_counter()
                result = reweight_files(nominal_fit, cheap_path, geometry, ReweightSettings(classifier=classifier))
                seconds = time.perf_counter() - start
                summary = result.summary()
                row = {"spot_factor": factor, "classifier": classifier, "fit_auc": summary["classifier_auc"],
                       "effective_fraction": summary["effective_fraction"], "clipped_fraction": summary["clipped_fraction"],
                       "fit_seconds": seconds, "judged": judged(nominal_judge, cheap_path, result.weights, args.n)}  # fmt: skip
                cached.write_text(json.dumps(row))
            rows.append(json.loads(cached.read_text()))
            r = rows[-1]
            print(f"spot factor {factor:g}, {classifier}: effective {r['effective_fraction']:.0%}, within 2x "
                  f"{r['judged']['within_2x_floor']:.1%} (unweighted {unweighted['judged']['within_2x_floor']:.1%}), "
                  f"AUC high {r['judged']['auc_high']:.3f}", flush=True)  # fmt: skip
    command = " ".join(["python benchmarks/bench_reweight_overlap.py", *sys.argv[1:]])
    print("wrote", write_result("reweight_overlap", {"geometry": GEOMETRY, "n_showers": args.n, "rows": rows}, command))


if __name__ == "__main__":
    main()
