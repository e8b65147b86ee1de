"""The end-to-end job behind ``calo quickstart``: simulate -> train -> sample -> evaluate -> report.

Each step writes its own output in the run folder and is skipped when that output is already
complete, so an interrupted job picks up where it stopped (training resumes from its last
checkpoint); ``force`` redoes everything.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calosurrogate._io import atomic_output, folder_lock
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.report import write_evaluation
from calosurrogate.sampling import conditions_from_file, sample_to_file
from calosurrogate.simulate import get_detector, simulate_to_file
from calosurrogate.training import CHECKPOINT, MODEL, TrainConfig, train

DEFAULT_TRAIN = TrainConfig(epochs=100, batch_size=256, learning_rate=1e-3, precision="auto", max_minutes=5.0, seed=1)


# FPD, KPD and PRDC at quick-look sample sizes (2,000-10,000 showers; the official sizes cost three
# minutes more, which a 2-core CPU without AMX cannot spare within the main job's 15), the classifier
# as `calo evaluate` runs it. The report lists the sizes; `calo evaluate` without --fast uses the official ones.
MAIN_JOB_EVALUATION = EvaluationSettings.fast(classifier=ClassifierSettings.cpu())


def run_quickstart(
    out_dir: str | Path,
    geometry_name: str = "ds2",
    n_train: int = 20_000,
    n_reference: int = 20_000,
    seed: int = 1,
    model_name: str = "flow",
    model_overrides: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    evaluation: EvaluationSettings | None = None,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Run the main job on simulated data; returns the paths it wrote (``report`` among them)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    detector = get_detector(geometry_name)
    timings: dict[str, float] = {}

    def step(name: str, path: Path, make: Callable[[], object]) -> Path:
        if path.exists() and not force:
            echo(f"[{name}] reusing {path}")
            return path
        echo(f"[{name}] ...")
        start = time.monotonic()
        make()
        timings[name] = time.monotonic() - start
        echo(f"[{name}] done in {timings[name]:.0f} s")
        return path

    train_file = step("simulate training showers", out / "train.h5",
                      lambda: simulate_to_file(detector, n_train, out / "train.h5", seed=seed, force=force, progress=progress))  # fmt: skip
    reference = step("simulate reference showers", out / "reference.h5",
                     lambda: simulate_to_file(detector, n_reference, out / "reference.h5", seed=seed + 1000, force=force, progress=progress))  # fmt: skip
    run_dir = out / "run"
    config = train_config or DEFAULT_TRAIN

    def fit() -> None:
        resume = (run_dir / CHECKPOINT).exists() and not force
        model = build_surrogate(model_name, detector.geometry, model_overrides)
        result = train(model, train_file, run_dir, config, resume=resume, force=force, progress=progress)
        echo(
            f"  {result.epochs_done} epochs, stopped by {result.stopped_because}, best validation loss {result.best_val_loss:.4f}"
        )

    model_path = step(f"train {model_name}", run_dir / MODEL, fit)
    generated = out / "generated.h5"
    sampling_seconds: dict[str, float] = {}

    def generate() -> None:
        model = load_surrogate(model_path)
        conditions = conditions_from_file(reference, model)
        _, seconds = sample_to_file(
            model, conditions, generated, batch_size=5000, seed=seed, force=force, progress=progress
        )
        sampling_seconds["per_shower_ms"] = 1e3 * seconds / len(conditions)

    step("sample", generated, generate)
    eval_dir = out / "evaluation"
    settings = evaluation or MAIN_JOB_EVALUATION
    settings = dataclasses.replace(settings, progress=progress)

    def judge() -> None:
        with folder_lock(eval_dir, "an evaluation"):
            result = evaluate_files(reference, generated, detector.geometry, settings)
            result.provenance["pipeline"] = {
                "model": model_name,
                "train_config": dataclasses.asdict(config),
                "timings_s": timings,
                **sampling_seconds,
            }
            write_evaluation(result, detector.geometry, eval_dir, force=True)

    step("evaluate", eval_dir / "report.html", judge)
    with atomic_output(out / "timings.json", force=True) as tmp:
        tmp.write_text(json.dumps(timings, indent=2))
    summary = (eval_dir / "summary.md").read_text()
    echo("\n" + summary)
    return {"train": train_file, "reference": reference, "model": model_path, "generated": generated,
            "evaluation": eval_dir, "report": eval_dir / "report.html"}  # fmt: skip
