"""Train a surrogate on simulator data within a time budget, then judge it and time its sampling.

Data: the fast engine's showers (made once per geometry in --workdir), or given files
(``--train-file``/``--reference-file``, e.g. the geant4 engine's); the result records which.

Run: .venv/bin/python benchmarks/bench_models.py --geometry ds1-photons --model flow --minutes 30
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    data_source,
    given_or_simulated_data,
    selected_epoch,
    tagged,
    wait_for,
    worst_separation,
    write_result,
)

from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.report import write_evaluation
from calosurrogate.sampling import conditions_from_file, sample_to_file
from calosurrogate.simulate import get_detector
from calosurrogate.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds1-photons")
    parser.add_argument("--model", default="flow")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-reference", type=int, default=50_000)
    parser.add_argument("--precision", default="auto", help="training precision (auto: bf16 where native, else fp32)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: 2e-4 for wgan, else 1e-3)")
    parser.add_argument("--workdir", default="benchmarks/work")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="model.KEY=VALUE")
    parser.add_argument("--n-eval", type=int, default=None, help="judge on the first N reference showers")
    parser.add_argument("--tag", default="", help="suffix of the work folder and result name (variants)")
    parser.add_argument("--train-file", type=Path, default=None, help="train on this file (default: fast engine)")
    parser.add_argument("--reference-file", type=Path, default=None, help="judge against this file")
    args = parser.parse_args()
    import torch
    import yaml

    from calosurrogate.devices import resolve_precision

    args.precision = resolve_precision(args.precision, torch.device("cpu"))  # recorded as what ran

    overrides = {
        k.removeprefix("model."): yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args.assignments)
    }
    detector = get_detector(args.geometry)
    name = tagged(f"{args.geometry}_{args.model}", args.tag)
    work = Path(args.workdir) / name.replace("_", "-")
    work.mkdir(parents=True, exist_ok=True)
    train_file, ref = given_or_simulated_data(args)
    model = build_surrogate(args.model, detector.geometry, overrides)
    lr = args.lr if args.lr is not None else (2e-4 if args.model == "wgan" else 1e-3)
    config = TrainConfig(
        epochs=1000, batch_size=256, learning_rate=lr, precision=args.precision, max_minutes=args.minutes, seed=1
    )
    start = time.perf_counter()
    result = train(model, train_file, work / "run", config, force=True)
    train_s = time.perf_counter() - start
    model = load_surrogate(result.model_path)
    source = data_source(train_file, wait_for(ref))
    conditions = conditions_from_file(ref, model)[: args.n_eval]
    timing = {}
    for precision in ("fp32", "bf16"):
        out = work / f"generated_{precision}.h5"
        _, seconds = sample_to_file(model, conditions, out, batch_size=10_000, precision=precision, force=True)
        timing[precision] = 1e3 * seconds / len(conditions)
    rows = {}
    for precision in ("fp32", "bf16"):
        settings = EvaluationSettings()
        settings.classifier = dataclasses.replace(settings.classifier, runs=3)
        settings.metrics = ("histograms", "fpd", "kpd", "cfd", "cls-high", "cls-low")
        settings.max_showers = args.n_eval
        evaluation = evaluate_files(ref, work / f"generated_{precision}.h5", detector.geometry, settings)
        write_evaluation(evaluation, detector.geometry, work / f"evaluation_{precision}", force=True)
        rows[precision] = {
            "sampling_ms_per_shower_batch_10000": round(timing[precision], 4),
            "auc_low": evaluation.classifiers["cls-low"]["auc"], "auc_low_std": evaluation.classifiers["cls-low"]["auc_std"],
            "auc_high": evaluation.classifiers["cls-high"]["auc"], "auc_high_std": evaluation.classifiers["cls-high"]["auc_std"],
            **{k: {"value": v["value"], "error": v["error"], "floor": v.get("floor")} for k, v in evaluation.scalars.items()},
            "separation_etot_einc": evaluation.separation["E_tot/E_inc"]["value"],
            "worst_separation": worst_separation(evaluation.separation, 5),
        }  # fmt: skip
    data = {"geometry": args.geometry, "model": args.model, "model_config": result.history and model.checkpoint_dict()["config"],
            "train_minutes_budget": args.minutes, "learning_rate": lr, "train_seconds": round(train_s), "epochs": result.epochs_done,
            "selected_epoch": selected_epoch(work / "run", model.adversarial),
            "n_train": source["train_showers"], "n_reference": len(conditions), "data": source, "train_precision": args.precision,
            "threads": torch.get_num_threads(), "tag": args.tag, "results": rows}  # fmt: skip
    print(data)
    command = " ".join(["python benchmarks/bench_models.py", *sys.argv[1:]])
    print("wrote", write_result(f"model_{name}", data, command))


if __name__ == "__main__":
    main()
