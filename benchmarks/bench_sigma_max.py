"""Where the few-step samplers of the shipped ds2 diffusion model should start: quality against the
highest noise level ``sigma_max`` (and, as an ablation, analytic-ddpm's extra variance only above a
noise level, plain DDPM steps below it).

The codes are standardised on hits, so an empty voxel sits up to ~19 units from zero: ``sigma_max``
must be well above that, and every step above what is needed is lost to the levels that shape the
shower. One classifier training per AUC (a scan; the kept settings are judged with three by
bench_diffusion_steps.py --sigma-max). Rows accumulate in results/sigma_max_ds2.json.

Run: .venv/bin/python benchmarks/bench_sigma_max.py --settings 16:80,16:20,14:20 [--settings 32:20:1]
     (STEPS:SIGMA_MAX[:GATE]: GATE, the noise level below which analytic-ddpm adds no extra variance)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, sample_and_judge, write_result

RUN = Path("benchmarks/work/ds2-diffusion-edm-shipped/run/model.pt")
REFERENCE = Path("benchmarks/work/ds2/reference.h5")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", action="append", required=True, help="STEPS:SIGMA_MAX[:GATE], comma-separated")
    parser.add_argument("--sampler", default="analytic-ddpm")
    parser.add_argument("--n-eval", type=int, default=10_000)
    parser.add_argument("--classifier-runs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/sigma-max"))
    args = parser.parse_args()
    import torch

    from calosurrogate.models import load_surrogate
    from calosurrogate.sampling import conditions_from_file

    model = load_surrogate(RUN)
    conditions = conditions_from_file(REFERENCE, model)[: args.n_eval]
    variance = model.posterior_variance.forward
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for setting in (s for group in args.settings for s in group.split(",")):
        steps, sigma_max, *gate = setting.split(":")
        gate = float(gate[0]) if gate else 0.0

        def gated(sigma: float, gate: float = gate) -> torch.Tensor:
            v = variance(sigma)
            return v if sigma >= gate else torch.zeros_like(v)

        model.posterior_variance.forward = gated
        model.config.sampling = dataclasses.replace(model.config.sampling, sigma_max=float(sigma_max))
        model.configure_sampling(sampler=args.sampler, steps=int(steps), compile=True)
        out = args.workdir / f"generated_{args.sampler}_{steps}_{sigma_max}_{gate:g}.h5"
        row = sample_and_judge(model, conditions, REFERENCE, out, "bf16", args.n_eval, args.classifier_runs)
        row = {"steps": int(steps), "sigma_max": float(sigma_max), "variance_above": gate, "sampler": args.sampler,
               "classifier_runs": args.classifier_runs, **row}  # fmt: skip
        row.pop("ms_per_shower_batch_10000")  # timed beside other jobs: bench_shipped_speed.py times
        print(row, flush=True)
        rows.append(row)
    earlier = RESULTS / "sigma_max_ds2.json"
    before = json.loads(earlier.read_text()) if earlier.exists() else {}
    key = ("steps", "sigma_max", "variance_above", "sampler")
    measured = {tuple(r[k] for k in key) for r in rows}
    rows += [r for r in before.get("results", []) if tuple(r[k] for k in key) not in measured]
    rows.sort(key=lambda r: (r["sampler"], r["variance_above"], r["steps"], r["sigma_max"]))
    data = {"model": str(RUN), "reference": str(REFERENCE), "n_reference": len(conditions), "results": rows}
    if before:
        data["earlier_commands"] = [*before.get("earlier_commands", []), before["command"]]
    command = " ".join(["python benchmarks/bench_sigma_max.py", *sys.argv[1:]])
    print("wrote", write_result("sigma_max_ds2", data, command))


if __name__ == "__main__":
    main()
