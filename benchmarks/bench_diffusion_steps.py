"""Quality against sampling steps for the diffusion family, as CaloDiffusion reports it.

Trains one diffusion model within a time budget (or reuses the run), then for each number of
steps samples as many showers as the reference holds and records the classifier AUCs, the
separation power of E_tot/E_inc, FPD and the time per shower at batch 10,000.

Run: .venv/bin/python benchmarks/bench_diffusion_steps.py --geometry ds1-photons --minutes 15
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    data_source,
    diffusion_overrides,
    given_or_simulated_data,
    judge,
    sample_and_judge,
    selected_epoch,
    tagged,
    wait_for,
    write_result,
)

from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.models.base import merge_settings
from calosurrogate.models.diffusion.samplers import network_calls
from calosurrogate.sampling import conditions_from_file
from calosurrogate.simulate import get_detector
from calosurrogate.training import TrainConfig, calibrate, train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds1-photons")
    parser.add_argument("--objective", default="edm")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--steps", default="2,4,8,16,32")
    parser.add_argument("--sampler", default="heun")
    parser.add_argument("--precision", default="fp32", help="sampling precision of the sweep (auto: bf16 where native)")
    parser.add_argument("--train-precision", default="auto", help="auto: bf16 where native (AMX, CUDA), else fp32")
    parser.add_argument("--compile", action="store_true", help="sample through a compiled denoiser (torch.compile)")
    parser.add_argument(
        "--sigma-max", type=float, default=None, help="start sampling at this noise level (default: the model's)"
    )
    parser.add_argument("--check-fp32-at", type=int, default=None, help="also sample at fp32 at this many steps")
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--n-reference", type=int, default=50_000)
    parser.add_argument("--workdir", default="benchmarks/work")
    parser.add_argument("--n-eval", type=int, default=None, help="judge on the first N reference showers")
    parser.add_argument("--set", dest="assignments", action="append", default=[], help="model.KEY=VALUE")
    parser.add_argument("--tag", default="", help="suffix of the work folder and result name (variants)")
    parser.add_argument("--ema-decay", type=float, default=None, help="keep (and judge) an EMA of the weights")
    parser.add_argument("--classifier-runs", type=int, default=1, help="classifier trainings averaged per AUC")
    parser.add_argument(
        "--reuse-samples", action="store_true",
        help="judge the generated file a reused run already has at a step count (its earlier timing kept)",
    )  # fmt: skip
    parser.add_argument("--train-file", type=Path, default=None, help="train on this file (default: fast engine)")
    parser.add_argument("--reference-file", type=Path, default=None, help="judge against this file")
    args = parser.parse_args()
    import torch

    from calosurrogate.devices import resolve_precision

    args.precision = resolve_precision(args.precision, torch.device("cpu"))
    train_precision = resolve_precision(args.train_precision, torch.device("cpu"))

    overrides = merge_settings({"objective": {"name": args.objective}}, diffusion_overrides(args.assignments))
    detector = get_detector(args.geometry)
    train_file, ref = given_or_simulated_data(args)
    # Another sampler on a reused run (same tag) gets its own result beside the default Heun one.
    sampler = ("" if args.sampler == "heun" else f"_{args.sampler}") + ("_compiled" if args.compile else "")
    sampler += f"_smax{args.sigma_max:g}" if args.sigma_max else ""
    name = tagged(f"{args.geometry}_{args.objective}{sampler}", args.tag)
    work = Path(args.workdir) / (f"{args.geometry}-diffusion-{args.objective}" + (f"-{args.tag}" if args.tag else ""))
    run = work / "run"
    start = time.perf_counter()
    reused = (run / "model.pt").exists()
    if not reused:
        model = build_surrogate("diffusion", detector.geometry, overrides)
        # A killed training goes on from its last epoch, with what is left of the budget.
        resume = (run / "checkpoint.pt").exists() and (run / "log.csv").exists()
        logged = list(csv.DictReader((run / "log.csv").open())) if resume else []
        spent_s = float(logged[-1]["seconds"]) if logged else 0.0
        config = TrainConfig(epochs=1000, batch_size=256, learning_rate=1e-3, precision=train_precision,
                             max_minutes=max(args.minutes - spent_s / 60, 0.5), seed=1, ema_decay=args.ema_decay)  # fmt: skip
        result = train(model, train_file, run, config, resume=resume, force=not resume)
        epochs, train_s = result.epochs_done, spent_s + time.perf_counter() - start
    else:  # a reused run: what its training log says
        with open(run / "log.csv") as log:
            last = list(csv.DictReader(log))[-1]
        epochs, train_s = int(last["epoch"]), float(last["seconds"])
    model = load_surrogate(run / "model.pt")
    if args.sampler == "analytic-ddpm" and not bool(model.posterior_variance.calibrated):
        # A run trained before training measured the posterior variance (what calo calibrate does).
        model = calibrate(model, train_file)
        model.save(run / "model.pt")
    source = data_source(train_file, wait_for(ref))
    conditions = conditions_from_file(ref, model)[: args.n_eval]
    earlier = RESULTS / f"diffusion_steps_{name}.json"
    timed = {}  # (steps, precision) -> ms / shower of the earlier rows, for --reuse-samples
    if reused and earlier.exists():
        timed = {
            (r["steps"], r["precision"]): r["ms_per_shower_batch_10000"]
            for r in json.loads(earlier.read_text())["results"]
        }
    rows = []
    plan = [(int(s), args.precision) for s in args.steps.split(",")]
    if args.check_fp32_at is not None and args.precision != "fp32":
        plan.append((args.check_fp32_at, "fp32"))
    for steps, precision in plan:
        model.configure_sampling(sampler=args.sampler, steps=steps, compile=args.compile, sigma_max=args.sigma_max)
        compiled = ("_compiled" if args.compile else "") + (f"_smax{args.sigma_max:g}" if args.sigma_max else "")
        out = work / f"generated_{args.sampler}_{steps}_{precision}{compiled}.h5"
        row = {"steps": steps, "precision": precision, "network_calls": network_calls(steps, args.sampler),
               "classifier_runs": args.classifier_runs, "compiled": args.compile,
               "sigma_max": model.config.sampling.sigma_max}  # fmt: skip
        if args.reuse_samples and out.exists() and (steps, precision) in timed:
            row["ms_per_shower_batch_10000"] = timed[steps, precision]
            row.update(judge(model.geometry, ref, out, args.n_eval, args.classifier_runs))
        else:
            row.update(sample_and_judge(model, conditions, ref, out, precision, args.n_eval, args.classifier_runs))
        print(row, flush=True)
        rows.append(row)
    # A reused run keeps the rows it measured before at other step counts (one table per run). Read
    # now, not at the start: another run on the same model may have written meanwhile.
    before = json.loads(earlier.read_text()) if reused and earlier.exists() else {}
    measured = {(r["steps"], r["precision"]) for r in rows}
    rows += [r for r in before.get("results", []) if (r["steps"], r["precision"]) not in measured]
    rows.sort(key=lambda r: (r["precision"] != args.precision, r["steps"]))
    data = {"geometry": args.geometry, "objective": args.objective, "sampler": args.sampler,
            "train_minutes_budget": args.minutes, "train_precision": train_precision, "train_seconds": round(train_s), "epochs": epochs, "ema_decay": args.ema_decay,
            "selected_epoch": selected_epoch(run, adversarial=False),
            "model_config": model.checkpoint_dict()["config"], "n_reference": len(conditions), "data": source,
            "classifier_runs": args.classifier_runs, "threads": torch.get_num_threads(), "tag": args.tag, "results": rows}  # fmt: skip
    if before:  # the commands that measured the rows kept from before, and what was noted of them
        data["earlier_commands"] = [*before.get("earlier_commands", []), before["command"]]
        data.update({"note": before["note"]} if "note" in before else {})
    command = " ".join(["python benchmarks/bench_diffusion_steps.py", *sys.argv[1:]])
    print("wrote", write_result(f"diffusion_steps_{name}", data, command))


if __name__ == "__main__":
    main()
