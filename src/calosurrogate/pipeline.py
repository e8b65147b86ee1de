"""The end-to-end job behind ``calo quickstart``: simulate -> train -> sample -> evaluate -> report.

Beside the model it trains in a few minutes, the job judges the model the package ships for the
geometry (:mod:`calosurrogate.models.pretrained`) on the same reference, and the report sets the two
side by side: what an hour of training buys over a few minutes.

Each step writes its own output in the run folder and is skipped when that output is already
complete, so an interrupted job picks up where it stopped (training resumes from its last
checkpoint); ``force`` redoes everything.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calosurrogate._io import atomic_output, folder_lock
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.models import build_surrogate, load_surrogate
from calosurrogate.models.pretrained import available, describe, load_pretrained
from calosurrogate.report import write_evaluation
from calosurrogate.report.comparison import headline
from calosurrogate.report.verdict import verdict
from calosurrogate.sampling import conditions_from_file, sample_to_file
from calosurrogate.simulate import get_detector, simulate_to_file
from calosurrogate.training import CHECKPOINT, MODEL, TrainConfig, train

DEFAULT_TRAIN = TrainConfig(epochs=100, batch_size=256, learning_rate=1e-3, precision="auto", max_minutes=5.0, seed=1)


# FPD, KPD and PRDC at quick-look sample sizes (2,000-10,000 showers; the official sizes cost three
# minutes more, which a 2-core CPU without AMX cannot spare within the main job's 15), the classifier
# as `calo evaluate` runs it. The report lists the sizes; `calo evaluate` without --fast uses the official ones.
MAIN_JOB_EVALUATION = EvaluationSettings.fast(classifier=ClassifierSettings.cpu())

# The shipped model samples this many of the reference's conditions: it is a diffusion model, tens
# of network passes per shower, and a CPU without bf16 must still finish the job within 15 minutes.
SHIPPED_SHOWERS = 5_000


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
    shipped: bool = True,
    shipped_showers: int = SHIPPED_SHOWERS,
) -> dict[str, Path]:
    """Run the main job on simulated data; returns the paths it wrote (``report`` among them).

    With ``shipped``, the shipped model of the geometry (if the package has one) samples the first
    ``shipped_showers`` conditions of the reference and is judged on them in ``evaluation-shipped/``;
    the main report compares it with the model trained here.
    """
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
    paths: dict[str, Path] = {}
    compared: list[dict[str, Any]] = []
    name = _shipped_for(geometry_name) if shipped else None
    if name is not None:
        shipped_eval = _judge_shipped(
            name, detector.geometry, reference, out, shipped_showers, seed, settings, step, force, progress
        )
        paths.update(shipped_generated=out / SHIPPED_GENERATED, shipped_evaluation=shipped_eval)

    def judge() -> None:
        with folder_lock(eval_dir, "an evaluation"):
            result = evaluate_files(reference, generated, detector.geometry, settings)
            result.provenance["pipeline"] = {
                "model": model_name,
                "train_config": dataclasses.asdict(config),
                "timings_s": timings,
                **sampling_seconds,
            }
            if name is not None:
                here = _entry_trained_here(model_name, config, n_train, _trained_minutes(run_dir), sampling_seconds)
                numbers = result.to_json_dict()
                here.update(headline(numbers | {"verdict": verdict(numbers)}), report="report.html")
                compared[:] = [here, _entry_shipped(name, paths["shipped_evaluation"])]
                result.provenance["compared"] = compared
            write_evaluation(result, detector.geometry, eval_dir, force=True)

    step("evaluate", eval_dir / "report.html", judge)
    with atomic_output(out / "timings.json", force=True) as tmp:
        tmp.write_text(json.dumps(timings, indent=2))
    summary = (eval_dir / "summary.md").read_text()
    echo("\n" + summary)
    return {"train": train_file, "reference": reference, "model": model_path, "generated": generated,
            "evaluation": eval_dir, "report": eval_dir / "report.html", **paths}  # fmt: skip


SHIPPED_GENERATED = "generated-shipped.h5"
SHIPPED_EVALUATION = "evaluation-shipped"


def _shipped_for(geometry_name: str) -> str | None:
    """The shipped model of a geometry (the first by name), or None."""
    return next((n for n in available() if describe(n)["geometry"] == geometry_name), None)


def _judge_shipped(
    name: str, geometry: CylindricalGeometry, reference: Path, out: Path, n_showers: int, seed: int, settings: EvaluationSettings,
    step: Callable[[str, Path, Callable[[], object]], Path], force: bool, progress: bool,
) -> Path:  # fmt: skip
    """Sample the shipped model at the reference's first conditions and judge it; its evaluation folder."""
    generated = out / SHIPPED_GENERATED
    eval_dir = out / SHIPPED_EVALUATION
    sampling: dict[str, float] = {}

    def generate() -> None:
        model = load_pretrained(name)
        conditions = conditions_from_file(reference, model)[:n_showers]
        # bf16 where the CPU runs it natively: how the shipped model was judged when it was trained
        _, seconds = sample_to_file(model, conditions, generated, batch_size=1000, precision="auto", seed=seed,
                                    force=force, progress=progress)  # fmt: skip
        sampling["per_shower_ms"] = 1e3 * seconds / len(conditions)

    def judge() -> None:
        with folder_lock(eval_dir, "an evaluation"):  # the first showers of the reference: those sampled
            result = evaluate_files(reference, generated, geometry, settings)
            result.provenance["pipeline"] = {"model": f"shipped {name}", **sampling}
            write_evaluation(result, geometry, eval_dir, force=True)

    step(f"sample the shipped model {name}", generated, generate)
    step(f"evaluate the shipped model {name}", eval_dir / "report.html", judge)
    return eval_dir


def _trained_minutes(run_dir: Path) -> float:
    """Minutes the run's training took, from its log (what a resumed run spent in all)."""
    with open(run_dir / "log.csv") as log:
        rows = list(csv.DictReader(log))
    return float(rows[-1]["seconds"]) / 60 if rows else 0.0


def _entry_trained_here(
    model_name: str, config: TrainConfig, n_train: int, minutes: float, sampling: dict[str, float]
) -> dict[str, Any]:
    return {
        "label": f"{model_name} (trained here)",
        "what": f"the {model_name} family with its default settings, trained by this job",
        "training": f"{minutes:.1f} min on {n_train:,} showers of this job, this machine",
        "training_minutes": round(minutes, 1),
        "ms_per_shower": sampling.get("per_shower_ms"),
    }


def _entry_shipped(name: str, eval_dir: Path) -> dict[str, Any]:
    about = describe(name)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    training = about["training"]
    return {
        "label": f"{name} (shipped)",
        "what": about["summary"],
        "training": f"{training['minutes']:g} min on {about['data']['train_showers']:,} showers ({about['data']['engine']}), "
        f"{training['machine']}",
        "training_minutes": training["minutes"],
        "ms_per_shower": metrics["provenance"].get("pipeline", {}).get("per_shower_ms"),
        "report": f"../{SHIPPED_EVALUATION}/report.html",
        **headline(metrics),
    }
