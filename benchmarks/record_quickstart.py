"""Record a finished `calo quickstart` run (its metrics.json and timings) as a benchmark result.

Run: time bash scripts/quickstart.sh; .venv/bin/python benchmarks/record_quickstart.py --from quickstart --wall-seconds S
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import tagged, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--from", dest="folder", default="quickstart")
    parser.add_argument("--commit", default=None, help="Commit the run used (default: the checkout's HEAD).")
    parser.add_argument(
        "--wall-seconds", type=float, required=True, help="Wall time of the whole command, as `time` gave it."
    )
    parser.add_argument(
        "--note", default="", help="Anything that affected the run (e.g. a fresh venv, a concurrent job)."
    )
    parser.add_argument("--tag", default="", help="suffix of the result name (another machine, say)")
    args = parser.parse_args()
    folder = Path(args.folder)
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    pipeline = metrics["provenance"]["pipeline"]
    data = {
        "geometry": metrics["geometry"], "n_showers": metrics["n_showers"], "wall_seconds": args.wall_seconds, "note": args.note,
        # timings.json, written last, has the evaluation's time too
        "step_seconds": json.loads((folder / "timings.json").read_text()) if (folder / "timings.json").exists() else pipeline["timings_s"], "sampling_ms_per_shower": pipeline["per_shower_ms"],
        "train_config": {k: pipeline["train_config"][k] for k in ("max_minutes", "precision", "batch_size", "learning_rate")},
        "classifiers": {k: {"auc": v["auc"], "jsd": v["jsd"]} for k, v in metrics["classifiers"].items()},
        "scalars": {k: {"value": v["value"], "error": v["error"], "floor": v.get("floor")} for k, v in metrics["scalars"].items()},
        "separation_etot_einc": metrics["separation_power"]["E_tot/E_inc"],
        "compared": metrics["provenance"].get("compared", []),  # the shipped model judged beside it
    }  # fmt: skip
    print(
        "wrote",
        write_result(tagged("quickstart", args.tag), data, "bash scripts/quickstart.sh", commit=args.commit),
    )


if __name__ == "__main__":
    main()
