"""Scaling on one machine (issue 26): data-parallel training, and generation and Geant4 simulation on Dask.

Parts (each measured alone on a quiet machine, ratios taken within one run):

- ``ddp``: the ds2 diffusion recipe (configs/ds2-diffusion.yaml, bf16 where native) trained for
  two epochs on the first ``--train-showers`` showers by ``calo train`` with 1 process of 1
  thread, 2 processes of 1 thread (``--nproc 2``, gloo) and 1 process of 2 threads; showers per
  second of the second epoch (the first also reads and caches the file).
- ``sample``: ``calo sample --workers 1`` and ``--workers 2`` of ``--run`` (shards of 10,000).
- ``geant4``: ``calo simulate --engine geant4 --workers 1`` and ``--workers 2``, ds2 electrons.
- ``million``: 1,000,000 ds2 showers of ``--run`` in 20 shards on ``--million-workers``, then read back as one
  file (every shower, in chunks) with :class:`~calosurrogate.data.ShowerFile`.

Run: .venv/bin/python benchmarks/bench_scaling.py --part ddp|sample|geant4|million [--run RUN] [--data FILE]
Results: benchmarks/results/scaling_ds2.json (parts merged).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
CALO = [sys.executable, "-m", "calosurrogate"]
NAME = "scaling_ds2"


def _run(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _second_epoch_seconds(run: Path) -> float:
    with open(run / "log.csv") as log:
        rows = list(csv.DictReader(log))
    return float(rows[1]["seconds"]) - float(rows[0]["seconds"])


def ddp(args, work: Path) -> dict:
    results = {}
    n_train = args.train_showers - max(1, int(args.train_showers * 0.1))
    variants = {
        "1 process, 1 thread": (["--set", "train.threads=1"], {"OMP_NUM_THREADS": "1"}),
        "2 processes, 1 thread each": (["--nproc", "2", "--set", "train.threads=1"], {}),
        "1 process, 2 threads": (["--set", "train.threads=2"], {"OMP_NUM_THREADS": "2"}),
    }
    for batch in (int(b) for b in args.batches.split(",")):
        settings = ["--config", str(ROOT / "configs" / "ds2-diffusion.yaml"), "--set", "train.max_minutes=null",
                    "--set", "train.epochs=2", "--set", f"train.max_showers={args.train_showers}",
                    "--set", "train.precision=auto", "--set", f"train.batch_size={batch}"]  # fmt: skip
        rows = {}
        for label, (extra, env) in variants.items():
            run = work / f"ddp-{batch}-{len(label)}"
            shutil.rmtree(run, ignore_errors=True)
            command = [*CALO, "train", "--model", "diffusion", "--data", str(args.data), "--out", str(run)]
            _run([*command, *settings, *extra], env)
            seconds = _second_epoch_seconds(run)
            rows[label] = {"epoch_seconds": seconds, "showers_per_second": n_train / seconds}
            print(batch, label, rows[label], flush=True)
        base = rows["1 process, 1 thread"]["showers_per_second"]
        results[str(batch)] = {"variants": rows,
                               "speedup_2_processes": rows["2 processes, 1 thread each"]["showers_per_second"] / base,
                               "speedup_2_threads": rows["1 process, 2 threads"]["showers_per_second"] / base}  # fmt: skip
    return {"ddp": {"train_showers": n_train, "config": "configs/ds2-diffusion.yaml", "by_global_batch": results}}


def _sharded_runs(command: list[str], out: Path, showers: int) -> dict:
    results = {}
    for workers in (1, 2):
        target = out.with_name(f"{out.stem}-{workers}.h5")
        shutil.rmtree(f"{target}.shards", ignore_errors=True)
        target.unlink(missing_ok=True)
        seconds = _run([*command, "--workers", str(workers), "--out", str(target)])
        results[f"{workers} worker(s)"] = {"wall_seconds": seconds, "showers_per_second": showers / seconds}
        print(workers, results[f"{workers} worker(s)"], flush=True)
        shutil.rmtree(f"{target}.shards", ignore_errors=True)
        target.unlink(missing_ok=True)
    one, two = (results[f"{w} worker(s)"]["showers_per_second"] for w in (1, 2))
    return {"showers": showers, "variants": results, "speedup_2_workers": two / one}


def sample(args, work: Path) -> dict:
    command = [*CALO, "sample", "--run", args.run, "--n", str(args.sample_showers), "--energies", "log-uniform:1GeV:1TeV",
               "--precision", "auto", "--shard-size", "10000"]  # fmt: skip
    return {"sample": {"run": args.run, **_sharded_runs(command, work / "sample.h5", args.sample_showers)}}


def geant4(args, work: Path) -> dict:
    command = [*CALO, "simulate", "--engine", "geant4", "--geometry", "ds2", "--n", str(args.geant4_showers),
               "--energy", args.geant4_energy, "--chunk-size", "25", "--shard-size", "50", "--quiet"]  # fmt: skip
    return {"geant4": {"energy": args.geant4_energy, "shard_size": 50,
                       **_sharded_runs(command, work / "geant4.h5", args.geant4_showers)}}  # fmt: skip


def million(args, work: Path) -> dict:
    import numpy as np

    from calosurrogate.data import ShowerFile

    out = work / "million.h5"
    shutil.rmtree(f"{out}.shards", ignore_errors=True)
    out.unlink(missing_ok=True)
    n = 1_000_000
    written = _run([*CALO, "sample", "--run", args.run, "--n", str(n), "--energies", "log-uniform:1GeV:1TeV",
                    "--precision", "auto", "--shard-size", "50000", "--workers", str(args.million_workers),
                    "--out", str(out)])  # fmt: skip
    shard_bytes = sum(p.stat().st_size for p in Path(f"{out}.shards").glob("shard-*.h5"))
    start = time.perf_counter()
    total, count = 0.0, 0
    with ShowerFile(out) as f:
        n_read = f.n_showers
        for batch in f.iter_chunks(20_000):
            total += float(np.sum(batch.showers, dtype=np.float64))
            count += len(batch.showers)
    read = time.perf_counter() - start
    result = {"run": args.run, "showers": n, "shards": 20, "workers": args.million_workers, "write_seconds": written,
              "read_seconds": read,
              "showers_read": count, "n_showers_seen": n_read, "gigabytes_on_disk": shard_bytes / 1e9,
              "mean_energy_gev": total / count / 1e3}  # fmt: skip
    print(result, flush=True)
    if not args.keep:
        shutil.rmtree(f"{out}.shards", ignore_errors=True)
        out.unlink(missing_ok=True)
    return {"million": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["ddp", "sample", "geant4", "million"], required=True)
    parser.add_argument("--data", default=str(ROOT / "benchmarks" / "work" / "ds2" / "train.h5"))
    parser.add_argument("--run", default=str(ROOT / "benchmarks" / "work" / "ds2-wgan" / "run"))
    parser.add_argument("--train-showers", type=int, default=12_000)
    parser.add_argument("--batches", default="256,1024", help="ddp: global batch sizes")
    parser.add_argument("--sample-showers", type=int, default=200_000)
    parser.add_argument("--geant4-showers", type=int, default=400)
    parser.add_argument("--geant4-energy", default="fixed:20GeV")
    parser.add_argument("--workdir", default="/tmp/bench_scaling")
    parser.add_argument("--keep", action="store_true", help="million: keep the million showers")
    parser.add_argument("--million-workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    part = {"ddp": ddp, "sample": sample, "geant4": geant4, "million": million}[args.part](args, work)
    previous = RESULTS / f"{NAME}.json"
    data = json.loads(previous.read_text()) if previous.exists() else {}
    parts = data.get("parts", {})
    command = " ".join(["python benchmarks/bench_scaling.py", *sys.argv[1:]])
    for key, value in part.items():
        parts[key] = {**value, "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_result(NAME, {"parts": parts}, command=command)


if __name__ == "__main__":
    main()
