"""Time per shower of a shipped model on a quiet machine: one sampling pass per step count at
batch 10,000, after the one-time preparation (compilation), with all of the CPU's threads.

The quality of each setting is measured where its showers were judged (bench_diffusion_steps.py
rows of the same run, and the model's provenance); threads change the time, not the showers.

Run: .venv/bin/python benchmarks/bench_shipped_speed.py --name ds2-diffusion --steps 16,32,64 --threads 2 \
        --samplers ddpm,analytic-ddpm --repeats 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="ds2-diffusion")
    parser.add_argument("--steps", default="16,32,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per setting (median and range kept)")
    parser.add_argument("--samplers", default=None, help="comma-separated (default: the model's own)")
    parser.add_argument("--sigma-max", type=float, default=None, help="highest noise level (default: the model's)")
    parser.add_argument("--memory", default="reused",
                        help="reused (freed memory reused, calosurrogate.memory), mapped (fresh pages, "
                             "CALOSURROGATE_REUSE_MEMORY=0) or both, comma-separated: each setting timed in each")  # fmt: skip
    parser.add_argument("--tag", default="", help="results/shipped_speed_NAME_TAG.json (a study beside the main table)")
    args = parser.parse_args()
    import numpy as np
    import torch

    from calosurrogate.devices import resolve_precision
    from calosurrogate.models.pretrained import describe, load_pretrained

    torch.set_num_threads(args.threads)
    model = load_pretrained(args.name)
    precision = resolve_precision(args.precision, torch.device("cpu"), args.batch_size)
    # the training spectrum (log-uniform 1 GeV - 1 TeV), MeV
    energies = np.exp(np.random.default_rng(0).uniform(np.log(1e3), np.log(1e6), args.batch_size))[:, None]
    rows = []
    samplers = args.samplers.split(",") if args.samplers else [model.config.sampling.sampler]
    modes = args.memory.split(",")
    for sampler, steps in ((a, int(s)) for a in samplers for s in args.steps.split(",")):
        model.configure_sampling(sampler=sampler, steps=steps, sigma_max=args.sigma_max)
        start = time.perf_counter()
        model.prepare_sampling(energies, precision=precision)
        prepared = time.perf_counter() - start
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        showers = {}
        for _ in range(args.repeats):
            for mode in modes:  # interleaved: both modes see the same machine state
                os.environ["CALOSURROGATE_REUSE_MEMORY"] = "1" if mode == "reused" else "0"
                start = time.perf_counter()
                showers[mode] = model.sample(energies, batch_size=args.batch_size, precision=precision, seed=1)
                times[mode].append(1e3 * (time.perf_counter() - start) / len(energies))
        for mode in modes:
            row = {"steps": steps, "sampler": model.config.sampling.sampler, "sigma_max": model.config.sampling.sigma_max,
                   "compiled": model.config.sampling.compile, "precision": precision, "memory": mode,
                   "ms_per_shower": round(float(np.median(times[mode])), 3),
                   "ms_per_shower_range": [round(min(times[mode]), 3), round(max(times[mode]), 3)],
                   "prepare_seconds": round(prepared, 1), "finite": bool(np.isfinite(showers[mode]).all()),
                   "same_showers_as_first_mode": bool(np.array_equal(showers[mode], showers[modes[0]]))}  # fmt: skip
            print(row, flush=True)
            rows.append(row)
    about = describe(args.name)
    data = {"name": args.name, "tag": args.tag, "geometry": about["geometry"], "sampler": about["sampling"]["sampler"],
            "threads": args.threads, "batch_size": args.batch_size, "results": rows,
            "quality_as_shipped": about["quality"]["bfloat16 weights (as shipped)"]}  # fmt: skip
    command = " ".join(["python benchmarks/bench_shipped_speed.py", *sys.argv[1:]])
    print("wrote", write_result(f"shipped_speed_{args.name}{'_' + args.tag if args.tag else ''}", data, command))


if __name__ == "__main__":
    main()
