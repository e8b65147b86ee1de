"""Give a trained two-stage diffusion run a faint-layer library, its weights unchanged.

The library (:class:`calosurrogate.models.components.FaintLayerLibrary`) is preprocessing fitted
from the training showers, used only at sampling; a model trained without it gets one from the
same training file as :func:`calosurrogate.training.train` would fit it (the first training
showers, at most 50,000), and the copy is judged beside the original.

Usage: ``python benchmarks/refit_layer_library.py SOURCE_RUN TARGET_RUN TRAIN_FILE [--max-hits N]``
(runs are folders with ``model.pt``, ``log.csv`` and ``train_config.json``; TARGET_RUN must not exist).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from calosurrogate.data.hdf5 import ShowerFile
from calosurrogate.data.stream import ShowerStream
from calosurrogate.models import load_surrogate
from calosurrogate.models.base import build_surrogate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("train_file", type=Path)
    parser.add_argument("--max-hits", type=int, default=0, help="the model's library_max_hits (0: lost layers only)")
    args = parser.parse_args()
    if args.target.exists():
        raise SystemExit(f"{args.target}: exists; choose a new run folder")
    source = load_surrogate(args.source / "model.pt")
    config = dataclasses.asdict(source.config)
    config["first_stage"].update(library=True, library_max_hits=args.max_hits)
    model = build_surrogate("diffusion", source.geometry, config, source.condition_names)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any(not name.startswith("library.") for name in missing):
        raise SystemExit(f"{args.source}: not a diffusion run this library fits ({missing=}, {unexpected=})")
    train_config = json.loads((args.source / "train_config.json").read_text())
    with ShowerFile(args.train_file) as f:
        n_total = f.n_showers
    n_train = n_total - max(1, int(n_total * train_config["train"]["val_fraction"]))
    stream = ShowerStream(args.train_file, model.condition_names, 0, min(n_train, 50_000), 1, 20_000, False)
    showers, conditions = stream.all()
    model.library.fit(model.apply_cut(showers), conditions[:, :1], model.config.seed)
    shutil.copytree(args.source, args.target)
    model.save(args.target / "model.pt")
    train_config["model"] = dataclasses.asdict(model.config)
    (args.target / "train_config.json").write_text(json.dumps(train_config, indent=2))
    print(f"wrote {args.target / 'model.pt'}: library of {int(model.library.size.sum())} faint layers")


if __name__ == "__main__":
    main()
