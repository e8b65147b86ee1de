"""Cheap simulation plus learned correction (issue 25): reweighting and refinement on ds2, and the
accounting of whether it pays.

Fast engine (ds2, 1 GeV-1 TeV): nominal and cheap (``--cheap``: spots of twice the energy) files
made from the same primaries (paired by seed). The reweighter is fitted on one pair of files and
weights a cheap test file (cross-fitted: no weight from a classifier that saw its shower); the
refiner is trained on the fitting pair and applied to the cheap test file. Every arm is judged
against an independent nominal file with the CaloChallenge metrics beside their floors, plus
the number of hits and its concordance correlation with the paired nominal showers. A surrogate
(the VAE, trained for --vae-minutes on the nominal fitting file) is reweighted the same way.
Geant4 (--geant4-dir): nominal (0.7 mm) and cheap (10 mm) ds2 files with one seed, CPU per shower
from the files, and how separable the cheap showers are.

Stages keep their files in --workdir and are skipped when present (a killed run resumes).

Run: .venv/bin/python benchmarks/bench_correction.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import tagged, write_result

from calosurrogate.correction import ReweightSettings, reweight_files
from calosurrogate.correction.refine import RefinerBundle, RefineSettings, refine_file, train_refiner
from calosurrogate.data import read_showers
from calosurrogate.data.weights import read_weights, write_weights
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import default_min_energy, get_geometry
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.simulate import get_detector, simulate_to_file
from calosurrogate.simulate.detectors import cheap

GEOMETRY = "ds2"
HIGH_LEVEL = ("E_layer/", "EC_", "width_", "sparsity/", "E_tot/E_inc")


def _concordance(a: np.ndarray, b: np.ndarray) -> float:
    """Lin's concordance correlation coefficient of paired values."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    cov = np.mean((a - a.mean()) * (b - b.mean()))
    return float(2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2))


def _hits(path: Path, n: int) -> np.ndarray:
    geometry = get_geometry(GEOMETRY)
    showers = read_showers(path, geometry, negative="keep", max_showers=n).showers
    return (showers >= default_min_energy(geometry)).sum(1)


def _judge(reference: Path, generated: Path, weights: np.ndarray | None, n: int, runs: int) -> dict:
    settings = EvaluationSettings(
        metrics=("histograms", "fpd", "kpd", "cfd", "cls-high", "cls-low"),
        classifier=ClassifierSettings.cpu(runs=runs), max_showers=n, progress=False,
    )  # fmt: skip
    result = evaluate_files(reference, generated, get_geometry(GEOMETRY), settings, generated_weights=weights)
    high = {k: v for k, v in result.separation.items() if k.startswith(HIGH_LEVEL) and "@" not in k}
    ratios = {k: v["value"] / v["floor"] for k, v in high.items() if v.get("floor")}
    worst = sorted(ratios.items(), key=lambda kv: -kv[1])[:5]
    return {
        "n_showers": result.n_showers,
        "auc_high": result.classifiers["cls-high"]["auc"], "auc_high_std": result.classifiers["cls-high"]["auc_std"],
        "auc_low": result.classifiers["cls-low"]["auc"], "auc_low_std": result.classifiers["cls-low"]["auc_std"],
        "fpd_x1e3": result.scalars["FPD x 1e3"]["value"], "fpd_floor_x1e3": result.scalars["FPD x 1e3"].get("floor"),
        "kpd_x1e3": result.scalars["KPD x 1e3"]["value"],
        "separation_within_2x_floor": sum(r <= 2 for r in ratios.values()) / max(len(ratios), 1),
        "n_high_level_observables": len(ratios),
        "worst_separation_over_floor": [{"observable": k, "ratio": round(r, 2)} for k, r in worst],
        "voxel_energy_separation": {k: result.separation["voxel_energy"][k] for k in ("value", "floor")},
    }  # fmt: skip


def _judged_arm(work: Path, arm: str, reference: Path, path: Path, weights: np.ndarray | None, n: int, runs: int,
                paired_hits: np.ndarray | None = None) -> dict:  # fmt: skip
    """An arm judged with its (weighted) hit count and, when unweighted and paired, the hits' concordance
    with the paired nominal showers; kept in ``arm_NAME.json`` (delete it when the arm's inputs change)."""
    cached = work / f"arm_{arm}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    row = _judge(reference, path, weights, n, runs)
    hits = _hits(path, n)
    row["hits_mean"] = float(hits.mean() if weights is None else weights @ hits / weights.sum())
    paired = paired_hits is not None and weights is None
    row["hits_concordance_with_paired_nominal"] = _concordance(hits, paired_hits) if paired else None
    cached.write_text(json.dumps(row, default=float))
    return row


def _surrogate_arms(work: Path, name: str, run: str, geometry, args, judge_ref: Path, n_judge: int) -> dict:
    """A surrogate's showers at the nominal test file's conditions, reweighted toward the nominal fitting
    file (cross-fitted), both judged; its sampling and weighting cost per shower in NAME_test.cost.json."""
    sample, weights_path, cost_path = (
        work / f"{name}_test.h5",
        work / f"{name}_test.weights.h5",
        work / f"{name}_test.cost.json",
    )
    cost = json.loads(cost_path.read_text()) if cost_path.exists() else {}
    if not sample.exists():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "calosurrogate.cli", "sample", "--run", run, "--energies",
                        str(work / "nominal_test.h5"), "--out", str(sample)], check=True)  # fmt: skip
        cost["sample_command_ms_per_shower"] = 1e3 * (time.perf_counter() - start) / args.n
    if not weights_path.exists():
        start = time.perf_counter()
        rw = reweight_files(work / "nominal_fit.h5", sample, geometry, ReweightSettings(epochs=args.reweight_epochs))
        cost["reweighting_fit_seconds"] = time.perf_counter() - start
        write_weights(weights_path, rw.weights, {k: v for k, v in rw.summary().items() if k != "settings"})
    weights = read_weights(weights_path)
    cost["effective_fraction"] = float(weights.sum() ** 2 / (weights**2).sum() / len(weights))
    cost_path.write_text(json.dumps(cost))
    arms = {}
    for arm, w in ((name, None), (f"{name}_reweighted", weights)):
        arms[arm] = _judged_arm(work, arm, judge_ref, sample, w, n_judge, args.classifier_runs)
        print(f"{arm}: AUC high {arms[arm]['auc_high']:.3f} low {arms[arm]['auc_low']:.3f}", flush=True)
    return arms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000, help="showers per file")
    parser.add_argument("--workdir", default="benchmarks/work/correction")
    parser.add_argument("--refine-epochs", type=int, default=30)
    parser.add_argument("--reweight-epochs", type=int, default=30)
    parser.add_argument("--vae-minutes", type=float, default=10.0, help="0: no VAE arm")
    parser.add_argument("--surrogate", action="append", default=[],
                        help="a trained model to reweight too (RUN or shipped:NAME), repeatable")  # fmt: skip
    parser.add_argument("--classifier-runs", type=int, default=3)
    parser.add_argument(
        "--spot-factor", type=float, default=None, help="cheap mode's spot factor (default: the engine's)"
    )
    parser.add_argument("--tag", default="", help="results/correction_TAG.json")
    parser.add_argument("--geant4-dir", default="benchmarks/work/correction", help="holds g4_cut07.h5, g4_cut10.h5")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    detector = get_detector(GEOMETRY)
    cheaper = cheap(detector) if args.spot_factor is None else cheap(detector, args.spot_factor)
    files = {"nominal_fit": (detector, 101), "cheap_fit": (cheaper, 101), "nominal_test": (detector, 102),
             "cheap_test": (cheaper, 102), "nominal_judge": (detector, 103)}  # fmt: skip
    seconds_per_shower = {}
    for name, (det, seed) in files.items():
        path = work / f"{name}.h5"
        start = time.perf_counter()
        if not path.exists():
            simulate_to_file(det, args.n, path, seed=seed, progress=False)
            seconds_per_shower[name] = (time.perf_counter() - start) / args.n
    geometry = get_geometry(GEOMETRY)
    out: dict = {"n_showers": args.n, "cheap_spot_factor": cheaper.spot_energy_mev / detector.spot_energy_mev,
                 "fast_engine_seconds_per_shower": seconds_per_shower}  # fmt: skip

    # reweighting the cheap test file toward the nominal fitting file (cross-fitted)
    weights_path = work / "cheap_test.weights.h5"
    if not weights_path.exists():
        start = time.perf_counter()
        settings = ReweightSettings(epochs=args.reweight_epochs)
        rw = reweight_files(work / "nominal_fit.h5", work / "cheap_test.h5", geometry, settings)
        write_weights(weights_path, rw.weights, {**{k: v for k, v in rw.summary().items() if k != "settings"},
                      "seconds": time.perf_counter() - start,
                      "classifier": "boosted" if settings.boosted else "network"}, fold=rw.fold)  # fmt: skip
    with h5py.File(weights_path) as f:
        out["reweighting"] = {k: (json.loads(v) if isinstance(v, str) and v.startswith("[") else v)
                              for k, v in f.attrs.items()}  # fmt: skip
        out["reweighting"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in out["reweighting"].items()}
    weights = read_weights(weights_path)

    # refinement: trained on the fitting pair, applied to the cheap test file
    refiner_path, refined_path = work / "refiner.pt", work / "cheap_test.refined.h5"
    if not refiner_path.exists():
        fit_mod = read_showers(work / "cheap_fit.h5", geometry, negative="keep")
        fit_nom = read_showers(work / "nominal_fit.h5", geometry, negative="keep")
        start = time.perf_counter()
        bundle = train_refiner((fit_mod.incident_energies, fit_mod.showers), (fit_nom.incident_energies, fit_nom.showers),
                               geometry, RefineSettings(mode="paired", epochs=args.refine_epochs), log=True)  # fmt: skip
        bundle.history.append({"training_seconds": time.perf_counter() - start})
        bundle.save(refiner_path)
    bundle = RefinerBundle.load(refiner_path)
    _, refine_seconds = refine_file(bundle, work / "cheap_test.h5", refined_path, force=True)
    out["refinement"] = {"settings": dataclasses.asdict(bundle.settings), "ms_per_shower": 1e3 * refine_seconds,
                         "history": bundle.history}  # fmt: skip

    judge_ref = work / "nominal_judge.h5"
    n_judge = args.n
    arms = {
        "nominal": (work / "nominal_test.h5", None),
        "cheap": (work / "cheap_test.h5", None),
        "cheap_reweighted": (work / "cheap_test.h5", weights),
        "cheap_refined": (refined_path, None),
    }
    nominal_hits = _hits(work / "nominal_test.h5", n_judge)
    out["arms"] = {}
    for name, (path, w) in arms.items():
        start = time.perf_counter()
        row = out["arms"][name] = _judged_arm(work, name, judge_ref, path, w, n_judge, args.classifier_runs,
                                              nominal_hits)  # fmt: skip
        print(f"{name}: AUC high {row['auc_high']:.3f} low {row['auc_low']:.3f}, {row['separation_within_2x_floor']:.0%} "
              f"of separation powers within 2x floor ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip

    surrogates = {}
    if args.vae_minutes > 0:
        run = work / "vae_run"
        if not (run / "model.pt").exists():
            subprocess.run([sys.executable, "-m", "calosurrogate.cli", "train", "--model", "vae", "--data",
                            str(work / "nominal_fit.h5"), "--out", str(run), "--force", "--set",
                            f"train.max_minutes={args.vae_minutes}"], check=True)  # fmt: skip
        surrogates["vae"] = str(run)
    for spec in args.surrogate:  # e.g. shipped:ds2-diffusion
        surrogates[spec.removeprefix("shipped:").split("/")[-1]] = spec
    for name, run in surrogates.items():
        out["arms"].update(_surrogate_arms(work, name, run, geometry, args, judge_ref, n_judge))
        out[name] = {"run": run, **json.loads((work / f"{name}_test.cost.json").read_text())}
        if name == "vae":
            out[name]["minutes"] = args.vae_minutes

    g4 = Path(args.geant4_dir)
    if (g4 / "g4_cut07.h5").exists() and (g4 / "g4_cut10.h5").exists():
        info = {}
        for cut in ("07", "10"):
            with h5py.File(g4 / f"g4_cut{cut}.h5") as f:
                info[cut] = {k: f.attrs[k].item() if hasattr(f.attrs[k], "item") else f.attrs[k]
                             for k in ("cpu_seconds_per_shower", "range_cut_mm", "energy_spectrum")}  # fmt: skip
                info[cut]["n_showers"] = len(f["showers"])
        settings = EvaluationSettings(metrics=("histograms", "cls-high"),
                                      classifier=ClassifierSettings.cpu(runs=args.classifier_runs), progress=False)  # fmt: skip
        result = evaluate_files(g4 / "g4_cut07.h5", g4 / "g4_cut10.h5", geometry, settings)
        high = sorted(((k, v["value"]) for k, v in result.separation.items() if k.startswith(HIGH_LEVEL)),
                      key=lambda kv: -kv[1])[:5]  # fmt: skip
        out["geant4"] = {"nominal": info["07"], "cheap": info["10"],
                         "speed_up": info["07"]["cpu_seconds_per_shower"] / info["10"]["cpu_seconds_per_shower"],
                         "auc_high_cheap_vs_nominal": result.classifiers["cls-high"]["auc"],
                         "auc_high_std": result.classifiers["cls-high"]["auc_std"],
                         "largest_separation_powers": [{"observable": k, "value": v} for k, v in high],
                         "hits_mean": {c: float(_hits(g4 / f"g4_cut{c}.h5", 10_000).mean()) for c in ("07", "10")}}  # fmt: skip
        print(
            f"geant4: speed-up {out['geant4']['speed_up']:.2f}, AUC high {out['geant4']['auc_high_cheap_vs_nominal']:.3f}"
        )
    write_result(tagged("correction", args.tag), out, "python benchmarks/bench_correction.py " + " ".join(sys.argv[1:]))
    print(json.dumps(out, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
