"""Ship a trained benchmark model inside the package (src/calosurrogate/models/pretrained/).

Takes the run a benchmark trained (bench_diffusion_steps.py: its work folder and its result), sets
the sampler the model is shipped with, stores the network weights in bfloat16, judges the stored
model once more (same reference, same judge) to show what the rounding costs, and writes NAME.pt
with NAME.json: the commands, commit, data and seed behind it and both measurements.

Run (after bench_diffusion_steps.py --tag shipped ...):
    .venv/bin/python benchmarks/ship_pretrained.py --name ds2-diffusion \
        --run benchmarks/work/ds2-diffusion-edm-shipped/run \
        --result benchmarks/results/diffusion_steps_ds2_edm_ddpm_shipped.json --steps 64
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import git_commit, machine, sample_and_judge, simulated_data

from calosurrogate._io import atomic_output
from calosurrogate.models import load_surrogate
from calosurrogate.models.base import surrogate_from_checkpoint
from calosurrogate.models.pretrained import FOLDER, MAX_BYTES, compact_checkpoint
from calosurrogate.sampling import conditions_from_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True, help="the shipped model's name (NAME.pt, NAME.json)")
    parser.add_argument("--run", type=Path, required=True, help="the benchmark's run folder (model.pt, log.csv)")
    parser.add_argument("--result", type=Path, required=True, help="the benchmark's result JSON")
    parser.add_argument("--summary", required=True, help="one sentence: what the model is")
    parser.add_argument("--sampler", default="ddpm")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--eager", action="store_true", help="ship without sampling.compile (torch.compile)")
    parser.add_argument("--classifier-runs", type=int, default=3)
    parser.add_argument("--workdir", default="benchmarks/work")
    parser.add_argument("--force", action="store_true", help="replace a shipped model of that name (its "
                        "earlier commands and training commit are kept)")  # fmt: skip
    parser.add_argument("--command", action="append", default=[], help="another command that made the run (recorded)")
    args = parser.parse_args()
    import torch

    from calosurrogate.devices import resolve_precision

    bench = json.loads(args.result.read_text())
    row = next(r for r in bench["results"] if r["steps"] == args.steps)  # the sweep's own precision first
    model = load_surrogate(args.run / "model.pt")
    model.configure_sampling(sampler=args.sampler, steps=args.steps, compile=not args.eager)
    checkpoint = compact_checkpoint(model)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    size = buffer.getbuffer().nbytes
    if size > MAX_BYTES:
        raise SystemExit(
            f"{args.name}: {size / 2**20:.1f} MiB, more than the {MAX_BYTES / 2**20:.0f} MiB a shipped model may be"
        )
    buffer.seek(0)
    # judged as it will be read: from the bytes written, weights back in float32
    stored = surrogate_from_checkpoint(torch.load(buffer, weights_only=True), "the shipped file")

    _, reference = simulated_data(bench["geometry"], args.workdir, 50_000, bench["n_reference"])
    conditions = conditions_from_file(reference, stored)[: bench["n_reference"]]
    precision = resolve_precision("auto", torch.device("cpu"))
    out = Path(args.workdir) / f"shipped-{args.name}.h5"
    judged = sample_and_judge(stored, conditions, reference, out, precision, bench["n_reference"], args.classifier_runs)
    print("bf16-stored weights:", judged, flush=True)

    model_path, about_path = FOLDER / f"{args.name}.pt", FOLDER / f"{args.name}.json"
    # Shipping the same run again (e.g. after calo calibrate) keeps the story of how it was made.
    earlier = json.loads(about_path.read_text()) if args.force and about_path.exists() else {}
    commands = [c for c in earlier.get("commands", []) if "ship_pretrained.py" not in c]
    commands += [c for c in (bench["command"], *args.command) if c not in commands]
    commands.append(shlex.join(["python", "benchmarks/ship_pretrained.py", *sys.argv[1:]]))
    with atomic_output(model_path, force=args.force) as tmp:
        tmp.write_bytes(buffer.getvalue())
    about = {
        "name": args.name,
        "summary": args.summary,
        "family": model.family,
        "geometry": bench["geometry"],
        "sampling": {"sampler": args.sampler, "steps": args.steps, "compile": not args.eager},
        "training": {
            "minutes": round(bench["train_seconds"] / 60, 1),
            "epochs": bench["epochs"],
            "selected_epoch": bench["selected_epoch"],
            "seed": 1,
            "precision": bench["train_precision"],
            "threads": bench["threads"],
            "machine": f"{bench['machine']['cores']}-core {bench['machine']['cpu']}, {bench['threads']} thread(s)",
        },
        "data": bench["data"],
        "commands": commands,
        "commit": {"trained": earlier.get("commit", {}).get("trained", bench["commit"]), "shipped": git_commit()},
        "quality": {
            "judged_on": f"{bench['n_reference']:,} reference showers of the fast engine (seed 2), "
            f"{args.classifier_runs} classifier trainings",
            "float32 weights": {**row, "machine": bench["machine"]},
            "bfloat16 weights (as shipped)": {**judged, "precision": precision, "machine": machine()},
        },
        "file_bytes": size,
    }
    with atomic_output(about_path, force=True) as tmp:
        tmp.write_text(json.dumps(about, indent=2) + "\n")
    print(f"wrote {model_path} ({size / 2**20:.1f} MiB) and {about_path}")


if __name__ == "__main__":
    main()
