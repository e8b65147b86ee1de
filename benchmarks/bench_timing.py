"""Time per shower of every family (default configuration) by batch size and precision.

Sampling time depends on the architecture, not on the weights' values, so each family is built
with its default configuration and its preprocessing fitted on a few thousand simulated showers
(no training). Quality at each precision is measured separately, on trained models
(bench_models.py). Batch sizes 1, 100 and 10,000 as in the CaloChallenge table.

Run: .venv/bin/python benchmarks/bench_timing.py --geometry ds2 [--families wgan,vae] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import tagged, untrained_model, write_result

from calosurrogate.benchmark import default_conditions, time_grid
from calosurrogate.models import REGISTRY


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--families", default=",".join(sorted(REGISTRY)))
    parser.add_argument("--batch-sizes", default="1,100,10000")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--tag", default="", help="Suffix of the result file (to keep runs of several family sets).")
    args = parser.parse_args()
    rows = []
    for family in args.families.split(","):
        model = untrained_model(family, args.geometry)
        conditions = default_conditions(model)
        for result in time_grid(
            model, conditions, [int(b) for b in args.batch_sizes.split(",")], args.precisions.split(","),
            args.device, min_seconds=args.min_seconds, min_repeats=2, warmup=1,
        ):  # fmt: skip
            print(
                f"{family:6s} {result.precision} batch {result.batch_size:6d}: {result.ms_per_shower:.4f} ms/shower",
                flush=True,
            )
            rows.append(result.as_dict())
    command = (
        f"python benchmarks/bench_timing.py --geometry {args.geometry} --device {args.device} "
        f"--families {args.families} --batch-sizes {args.batch_sizes}" + (f" --tag {args.tag}" if args.tag else "")
    )
    name = tagged(f"timing_{args.geometry}_{args.device}", args.tag)
    print("wrote", write_result(name, {"geometry": args.geometry, "results": rows}, command))


if __name__ == "__main__":
    main()
