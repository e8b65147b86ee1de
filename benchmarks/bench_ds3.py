"""Dataset 3 end to end within 24 GiB (issue 26): train, sample in fp32 and bf16, judge with every metric,
each step a ``calo`` command whose peak memory (maximum resident set, /usr/bin/time) is recorded.

Steps are skipped when their output is there (a killed run continues; training resumes).

Run: .venv/bin/python benchmarks/bench_ds3.py --family wgan --minutes 15 [--config configs/ds2-diffusion.yaml]
     [--n-sample 50000] [--metrics histograms,fpd,...] [--workdir benchmarks/work/ds3]
Results: benchmarks/results/ds3_FAMILY.json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from _common import write_result

CALO = [sys.executable, "-m", "calosurrogate"]
EVERY_METRIC = "histograms,fpd,kpd,prdc,cfd,cls-low,cls-low-normed,cls-high,cls-cnn"


def _timed(command: list[str], log: Path) -> dict:
    """Run ``command`` under /usr/bin/time -v; its wall seconds, peak memory and output."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (see {log}):\n{done.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"wall_seconds": time.perf_counter() - start, "peak_gib": peak_kb / 2**20, "stdout": done.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--n-sample", type=int, default=50_000)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--metrics", default=EVERY_METRIC, help="metrics of the first precision's evaluation")
    parser.add_argument("--metrics-other", default=None, help="metrics of the other precisions' (default: --metrics)")
    parser.add_argument("--sample-set", action="append", default=[], help="extra calo sample options, e.g. --steps=16")
    parser.add_argument("--workdir", default="benchmarks/work/ds3")
    parser.add_argument("--tag", default="")
    parser.add_argument("--record-only", action="store_true", help="write the result of the steps done so far")
    args = parser.parse_args()
    work = Path(args.workdir)
    name = f"ds3_{args.family}{'_' + args.tag if args.tag else ''}"
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    train_file, reference = work / "train.h5", work / "reference.h5"
    record_path = folder / "steps.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}

    run = folder / "run"
    if args.record_only:
        args.precisions = ",".join(p for p in args.precisions.split(",") if f"evaluate_{p}" in record)
    if "train" not in record:
        command = [*CALO, "train", "--model", args.family, "--data", str(train_file), "--out", str(run),
                   "--set", f"train.max_minutes={args.minutes}", "--set", "train.epochs=1000",
                   "--set", "train.precision=auto", "--set", "train.threads=1", "--set", "train.chunk_size=5000"]  # fmt: skip
        command += ["--config", args.config] if args.config else []
        command += ["--resume"] if (run / "checkpoint.pt").exists() else []
        record["train"] = {k: v for k, v in _timed(command, folder / "train.log").items() if k != "stdout"}
        record["train"]["log"] = (run / "log.csv").read_text()
        record_path.write_text(json.dumps(record, indent=2))
    for index, precision in enumerate(p for p in args.precisions.split(",") if p):
        metrics = args.metrics if index == 0 or args.metrics_other is None else args.metrics_other
        key = f"sample_{precision}"
        generated = folder / f"generated_{precision}.h5"
        if key not in record:
            generated.unlink(missing_ok=True)
            command = [*CALO, "sample", "--run", str(run), "--energies", str(reference), "--n", str(args.n_sample),
                       "--precision", precision, "--out", str(generated), *args.sample_set]  # fmt: skip
            step = _timed(command, folder / f"{key}.log")
            ms = float(re.search(r"\(([\d.]+) ms per shower sampling\)", step.pop("stdout")).group(1))
            record[key] = {**step, "ms_per_shower": ms}
            record_path.write_text(json.dumps(record, indent=2))
        key = f"evaluate_{precision}"
        if key not in record:
            out = folder / f"evaluation_{precision}"
            command = [*CALO, "evaluate", "--reference", str(reference), "--generated", str(generated),
                       "--geometry", "ds3", "--metrics", metrics, "--out", str(out), "--force"]  # fmt: skip
            step = _timed(command, folder / f"{key}.log")
            step.pop("stdout")
            result = json.loads((out / "metrics.json").read_text())
            classifiers = {kind: {k: entry[k] for k in ("auc", "auc_std", "jsd")} | {
                "input_dtype": entry["settings"].get("input_dtype"), "showers_per_class":
                entry["settings"]["showers_per_class"]} for kind, entry in result["classifiers"].items()}  # fmt: skip
            scalars = {k: {"value": v["value"], "error": v["error"], "floor": v.get("floor")}
                       for k, v in result["scalars"].items()}  # fmt: skip
            record[key] = {**step, "metrics": metrics, "classifiers": classifiers, "scalars": scalars,
                           "verdict": result["verdict"]["word"]}  # fmt: skip
            record_path.write_text(json.dumps(record, indent=2))
    command = " ".join(["python benchmarks/bench_ds3.py", *sys.argv[1:]])
    write_result(name, {"family": args.family, "config": args.config, "minutes": args.minutes,
                        "n_sample": args.n_sample, "steps": record}, command=command)  # fmt: skip


if __name__ == "__main__":
    main()
