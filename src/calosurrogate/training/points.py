"""Training a CaloClouds model on a point-cloud file, stage by stage, each on its own time budget.

1. ShowerFlow on every training shower's points and energy per layer (negative log-likelihood).
2. The teacher point model by flow matching on points drawn uniformly from all training points
   (each shower weighs as much as it has points, as when training on whole showers).
3. The student by consistency distillation of the teacher (its target an EMA of itself).
4. The calibration of occupancy and energy on training showers.

After each stage the run folder's ``checkpoint.pt`` records the model and the stages done; a
killed run resumed with ``resume=True`` starts at the first stage not done. The last
``validation_fraction`` of the file is never trained on. ``OUT/model.pt`` appears at the end.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from calosurrogate._io import atomic_output, check_output_path, folder_lock
from calosurrogate.data.points import PointCloudFile
from calosurrogate.models.base import CheckpointError, ConfigError, autocast_context
from calosurrogate.models.caloclouds import CaloClouds, CaloCloudsConfig
from calosurrogate.models.components.consistency import consistency_distillation_loss, flow_matching_loss

STAGES = ("showerflow", "teacher", "student", "calibration")
TRAINED = STAGES[:3]  # the stages with networks to train (the calibration is fitted)


@dataclass
class PointTrainConfig:
    """Budgets and optimiser settings.

    Attributes:
        showerflow_minutes, teacher_minutes, student_minutes: Wall-clock budget of each stage.
        max_steps: Upper bound of optimiser steps per stage (tests; 0: none).
        showers_per_batch: ShowerFlow's batch.
        points_per_batch: The point models' batch.
        lr: Adam's learning rate (cosine-decayed over each stage's budget).
        distill_intervals: Time intervals of the consistency distillation.
        ema: Decay of the student's target per step.
        precision: Autocast of the training passes (``auto``: bf16 where the CPU has AMX or on CUDA).
        calibration_showers: Training showers the calibration uses.
        validation_fraction: Share of the file (at its end) kept out of training.
        from_run: A trained run (folder or model file) this run starts from: its codings and
            every stage not in ``retrain`` are taken as they are; the calibration is fitted anew.
        retrain: The stages trained anew when starting ``from_run``: ``student`` (e.g. a
            smaller one), ``showerflow`` (e.g. one that also draws the centre of gravity), or both;
            ``teacher`` needs ``student`` too.
        seed: Seed of everything drawn.
    """

    showerflow_minutes: float = 5.0
    teacher_minutes: float = 20.0
    student_minutes: float = 10.0
    max_steps: int = 0
    showers_per_batch: int = 256
    points_per_batch: int = 16384
    lr: float = 1e-3
    distill_intervals: int = 16
    ema: float = 0.95
    precision: str = "auto"
    calibration_showers: int = 3000
    from_run: str = ""
    retrain: tuple[str, ...] = ("student",)
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.retrain) - set(TRAINED))
        if unknown:
            raise ConfigError(f"retrain: unknown stage(s) {unknown}; stages: {list(TRAINED)}")
        if "teacher" in self.retrain and "student" not in self.retrain:
            raise ConfigError("retrain: a new teacher needs a new student (add student)")


def _run_stage(name: str, step_fn, params, config: PointTrainConfig, minutes: float, log: list[dict],
               progress: bool, after_step=None) -> None:  # fmt: skip
    """Adam on ``params`` with ``step_fn() -> loss`` until the stage's time or step budget is spent;
    the learning rate follows a cosine over the spent share of the budget (time or steps, whichever
    runs out first)."""
    seconds, max_steps = minutes * 60.0, config.max_steps or 10**12
    optimizer = torch.optim.Adam(params, lr=config.lr)
    start, step = time.monotonic(), 0
    bar = tqdm(desc=name, unit="step", disable=not progress)
    running = []
    autocast = autocast_context(torch.device("cpu"), config.precision)
    while step < max_steps and (elapsed := time.monotonic() - start) < seconds:
        for group in optimizer.param_groups:
            spent = max(elapsed / seconds, step / max_steps)
            group["lr"] = config.lr * 0.5 * (1 + np.cos(np.pi * min(spent, 1.0)))
        with autocast:
            loss = step_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        if after_step is not None:
            after_step()
        running.append(float(loss.detach()))
        step += 1
        bar.update()
        if step % 200 == 0:
            log.append({"stage": name, "step": step, "seconds": round(time.monotonic() - start, 1),
                        "loss": float(np.mean(running))})  # fmt: skip
            bar.set_postfix(loss=f"{np.mean(running):.4f}")
            running = []
    bar.close()
    log.append({"stage": name, "step": step, "seconds": round(time.monotonic() - start, 1),
                "loss": float(np.mean(running)) if running else float("nan")})  # fmt: skip


def train_caloclouds(data: str | os.PathLike[str], out: str | os.PathLike[str],
                     model_config: CaloCloudsConfig | None = None, config: PointTrainConfig | None = None,
                     resume: bool = False, force: bool = False, progress: bool = True) -> Path:  # fmt: skip
    """Train a CaloClouds model on ``data`` into the folder ``out`` (``model.pt``, ``log.csv``,
    ``train.json``); see the module docstring. Returns the model file."""
    model_config = model_config or CaloCloudsConfig()
    config = config or PointTrainConfig()
    out = Path(out)
    with folder_lock(out, "a training run"):
        if (out / "model.pt").exists() and not resume:
            check_output_path(out / "model.pt", force)
        out.mkdir(parents=True, exist_ok=True)
        checkpoint_path = out / "checkpoint.pt"
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        with PointCloudFile(data) as f:
            n_train = max(1, round(f.n_showers * (1 - config.validation_fraction)))
            clouds = f.read(0, n_train)
            geometry = f.geometry
        model = CaloClouds(model_config, geometry)
        done: list[str] = []
        log: list[dict] = []
        if resume and checkpoint_path.exists():
            saved = torch.load(checkpoint_path, weights_only=True)
            if saved["model_config"] != asdict(model_config) or saved["train_config"] != asdict(config):
                raise CheckpointError(f"{checkpoint_path}: made with other settings; resume with the same ones "
                                      "or start afresh with --force")  # fmt: skip
            model.load_state_dict(saved["state_dict"])
            done, log = list(saved["done"]), list(saved["log"])
        elif checkpoint_path.exists() and not force:
            raise CheckpointError(f"{checkpoint_path} exists: resume the run (--resume) or start afresh (--force)")
        elif config.from_run:
            source = Path(config.from_run)
            source = source / "model.pt" if source.is_dir() else source
            state = torch.load(source, weights_only=True)["state_dict"]
            anew = tuple(f"{stage}." for stage in config.retrain)
            missing, _ = model.load_state_dict({k: v for k, v in state.items() if not k.startswith(anew)},
                                               strict=False)  # fmt: skip
            if any(not k.startswith(anew) for k in missing):
                raise CheckpointError(f"{source}: lacks {[k for k in missing if not k.startswith(anew)][:3]}")
            if "student" in config.retrain:
                model.distilled.fill_(False)
            model.calibration.fill_(1.0)
            done = [stage for stage in TRAINED if stage not in config.retrain]
        else:
            model.fit_preprocessing(clouds, rng)

        def finish(stage: str) -> None:
            done.append(stage)
            with atomic_output(checkpoint_path, force=True) as tmp:
                torch.save({"state_dict": model.state_dict(), "done": done, "log": log, "train_config": asdict(config),
                            "model_config": asdict(model_config)}, tmp)  # fmt: skip

        conditions = model.conditions(clouds.incident_energies, clouds.directions)
        if "showerflow" not in done:
            targets = model.layer_targets(clouds)
            model.showerflow.fit(targets)  # a new ShowerFlow on another run's codings has not been fitted
            targets = torch.as_tensor(targets)

            def showerflow_step() -> torch.Tensor:
                idx = torch.randint(0, len(targets), (config.showers_per_batch,))
                return model.showerflow.loss(targets[idx], conditions[idx]).mean()

            _run_stage("showerflow", showerflow_step, list(model.showerflow.parameters()), config,
                       config.showerflow_minutes, log, progress)  # fmt: skip
            finish("showerflow")
        codes = model.codes(clouds.points, rng)
        shower_of_point = torch.as_tensor(clouds.shower_index)
        context = model.point_context(conditions, torch.as_tensor(clouds.n_points))

        def batch() -> tuple[torch.Tensor, torch.Tensor]:
            idx = torch.randint(0, len(codes), (config.points_per_batch,))
            return codes[idx], context[shower_of_point[idx]]

        if "teacher" not in done:
            _run_stage("teacher", lambda: flow_matching_loss(model.teacher, *batch()).mean(),
                       list(model.teacher.parameters()), config, config.teacher_minutes, log, progress)  # fmt: skip
            finish("teacher")
        if "student" not in done:
            mine, teachers = model.student.state_dict(), model.teacher.state_dict()
            shapes = [v.shape for v in mine.values()] == [v.shape for v in teachers.values()]
            if shapes:
                model.student.load_state_dict(model.teacher.state_dict())
            target = copy.deepcopy(model.student).requires_grad_(False)
            teacher = model.teacher.requires_grad_(False)

            def distill_step() -> torch.Tensor:
                x0, c = batch()
                return consistency_distillation_loss(model.student, target, teacher, x0, c,
                                                     config.distill_intervals).mean()  # fmt: skip

            def update_target() -> None:
                with torch.no_grad():
                    for p, q in zip(target.parameters(), model.student.parameters(), strict=True):
                        p.lerp_(q, 1 - config.ema)

            _run_stage("student", distill_step, list(model.student.parameters()), config, config.student_minutes,
                       log, progress, after_step=update_target)  # fmt: skip
            teacher.requires_grad_(True)
            model.distilled.fill_(True)
            finish("student")
        if "calibration" not in done:
            pick = rng.choice(len(clouds), size=min(config.calibration_showers, len(clouds)), replace=False)
            factors = model.eval().calibrate(clouds.select(np.sort(pick)), seed=config.seed)
            log.append({"stage": "calibration", "step": 0, "seconds": 0.0, "loss": float("nan"), **factors})
            finish("calibration")
        model.eval().save(out / "model.pt", force=True)
        with atomic_output(out / "log.csv", force=True) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["stage", "step", "seconds", "loss"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(log)
        with atomic_output(out / "train.json", force=True) as tmp:
            tmp.write_text(json.dumps({"data": str(data), "n_train": n_train, "train_config": asdict(config),
                                       "model_config": asdict(model_config), "log": log}, indent=2))  # fmt: skip
        return out / "model.pt"
