"""Speed levers on the fastest families: torch.compile, bf16 autocast and thread count, batch 10,000.

Same protocol as bench_timing.py (default configurations, preprocessing fitted, no training:
time does not depend on the weights' values). Quality at bf16 is measured on trained models
by bench_models.py; compilation does not change the arithmetic beyond float reordering.

Run: .venv/bin/python benchmarks/bench_levers.py --geometry ds2 --families wgan,vae
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import tagged, untrained_model, write_result

from calosurrogate.benchmark import default_conditions, time_sampling


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--families", default="wgan,vae")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--tag", default="", help="suffix of the result name (another machine, say)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    rows = []
    for family in args.families.split(","):
        model = untrained_model(family, args.geometry)
        conditions = default_conditions(model)
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            for precision in ("fp32", "bf16"):
                for compiled in (False, True):
                    r = time_sampling(model, conditions, args.batch_size, "cpu", precision, warmup=2, min_repeats=3,
                                      min_seconds=2.0, compile_model=compiled)  # fmt: skip
                    print(f"{family} threads {threads} {precision} compiled={r.compiled}: {r.ms_per_shower:.4f} ms "
                          f"{r.compile_error or ''}", flush=True)  # fmt: skip
                    rows.append(r.as_dict())
        torch.set_num_threads(default_threads)
    command = " ".join(["python benchmarks/bench_levers.py", *sys.argv[1:]])
    name = tagged(f"levers_{args.geometry}", args.tag)
    print("wrote", write_result(name, {"geometry": args.geometry, "tag": args.tag, "results": rows}, command))


if __name__ == "__main__":
    main()
