"""CaloClouds ablations on ild-ecal (issue 23): the one-step students of runs that differ in one stage
(ShowerFlow's budget, centre of gravity, mean layer, jitter, precision; the teacher's width), judged on
the same reference showers.

The runs start from one run's stages (``calo train --model caloclouds ... --set train.from_run=WORK/run
--set train.retrain=[showerflow]``, or ``[teacher,student]``); each is judged inclusive on 5 mm cells
against WORK/reference.h5 (half A against showers generated at half B's conditions, beside the floor A
against B), with the same noise seeds. Runs already in the result (same reference size) are kept, not
judged again (``--rejudge`` judges them again).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_showerflow_ild.py --runs run,run-flow20,run-cog20
     [--workdir benchmarks/work/ild] [--n 10000] [--rejudge]
Results: benchmarks/results/showerflow_ild.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from _common import RESULTS, git_commit, write_result
from bench_points import _generate

from calosurrogate.data.points import PointCloudFile
from calosurrogate.evaluation.points import evaluate_point_clouds
from calosurrogate.models.caloclouds import load_caloclouds


def _showerflow_training(log: list[dict]) -> dict:
    rows = [r for r in log if r["stage"] == "showerflow"]
    return {"steps": rows[-1]["step"], "minutes": rows[-1]["seconds"] / 60} if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="benchmarks/work/ild")
    parser.add_argument("--runs", default="run,run-flow20,run-cog20", help="run folders in WORK, comma-separated")
    parser.add_argument("--n", type=int, default=10000, help="reference showers judged")
    parser.add_argument("--rejudge", action="store_true", help="judge again the runs already in the result")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.workdir)
    with PointCloudFile(work / "reference.h5") as f:
        reference = f.read(0, args.n)
    path = RESULTS / "showerflow_ild.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    runs = earlier.get("runs", {}) if earlier.get("n_reference") == len(reference) and not args.rejudge else {}
    for name in args.runs.split(","):
        if name in runs:
            continue
        model = load_caloclouds(work / name / "model.pt")
        about = json.loads((work / name / "train.json").read_text())
        start = time.perf_counter()
        generated = _generate(model, reference, steps=0)
        seconds = time.perf_counter() - start
        result = evaluate_point_clouds(reference, generated, model.geometry)
        own = _showerflow_training(about["log"])
        source = about["train_config"].get("from_run")
        # a run started from another one trained only its ShowerFlow: that is the one to describe
        runs[name] = {**result.to_dict(), "model_config": asdict(model.config), "train_config": about["train_config"],
                      "showerflow": own, "from_run": source or None, "sampling_seconds": seconds,
                      "judged": {"commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}  # fmt: skip
        print(name, own, {k: round(v["value"], 4) for k, v in result.jsd.items()}, flush=True)
    path = write_result("showerflow_ild", {"n_reference": len(reference), "runs": runs},
                        "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(sys.argv))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
