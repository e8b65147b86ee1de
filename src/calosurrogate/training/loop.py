"""One direct training loop for every family (after nanoGPT): read, step, validate, checkpoint.

- Data stream from the HDF5 file in chunks (a chunk order and an in-chunk order drawn per
  epoch from the seed); a file small enough is cached in memory after the first pass.
- The last ``val_fraction`` of the file is the validation split.
- After every epoch ``checkpoint.pt`` (model, optimiser, scheduler, EMA, history, epoch) is
  written atomically; ``resume=True`` continues after the last complete epoch. Every source
  of randomness is re-seeded from ``(seed, epoch)``, so a resumed run ends with the same
  weights as an uninterrupted one.
- ``model.pt`` holds the best (lowest validation loss) weights, EMA-averaged when EMA is on.
- ``log.csv`` has one row per epoch.
- Under ``torchrun`` (``WORLD_SIZE`` > 1) each process reads its own contiguous share of the
  training and validation showers, with ``batch_size / processes`` showers per step, and the
  gradients are averaged before every step (:mod:`calosurrogate.training.distributed`); process 0
  writes the checkpoint, the log and the model. A run is resumed with as many processes as it had.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from calosurrogate._io import OutputExistsError, atomic_output, folder_lock
from calosurrogate.data import SHOWERS, ShowerFile, ShowerFileError
from calosurrogate.data.stream import ShowerStream
from calosurrogate.data.transforms import dequantize
from calosurrogate.devices import resolve_device, resolve_precision
from calosurrogate.models.base import (
    CheckpointError,
    ConfigError,
    Surrogate,
    autocast_context,
    config_from_dict,
    surrogate_from_checkpoint,
)
from calosurrogate.training.distributed import SINGLE, Processes, from_environment, join, leave

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
LOG = "log.csv"


@dataclass
class TrainConfig:
    """Settings of the training loop.

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Showers per step.
        learning_rate: Peak learning rate.
        optimizer: ``"adam"`` or ``"adamw"``.
        weight_decay: Weight decay (AdamW).
        schedule: ``"cosine"`` (cosine with warm restarts, one cycle per ``restart_epochs``),
            ``"onecycle"``, ``"plateau"`` (reduce on plateau of the validation loss) or ``"none"``.
        restart_epochs: Cycle length of the cosine schedule (epochs).
        plateau_patience: With the cosine schedule: every this many epochs without a better
            validation loss, the cycles grow twice as long, the current one included (ParaFlow's
            warm restarts whose rate halves on plateaus). None: off.
        grad_clip: Clip the gradient norm at this value (None: off).
        ema_decay: Keep an exponential moving average of the weights (None: off).
        val_fraction: Fraction of the file (its end) used for validation.
        patience: Stop after this many epochs without a better validation loss (None: off).
        select: Which weights ``model.pt`` keeps: ``"best"`` (lowest validation loss), ``"last"``,
            or ``"auto"``: best for likelihood families, last for adversarial ones (a critic's
            estimate is lowest when the critic is fooled, not when the generator is good).
        precision: ``"fp32"``, ``"bf16"`` (fast with CPU AMX or AVX512-BF16, and CUDA), ``"fp16"``
            (CUDA) or ``"auto"``: bf16 where the device runs it natively, else fp32.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        seed: Seed of every random draw.
        chunk_size: Showers read from the file at a time.
        cache_limit_gb: Keep the training data in memory when it is below this size.
        max_showers: Use at most this many showers of the file.
        max_minutes: Wall-time budget: no epoch is started that would, at the pace so far, end
            past it (None: off). With the cosine schedule (and no ``restart_epochs``) the cycle is
            then refitted to the budget after every epoch, from the mean epoch time so far, so the
            learning rate decays to its end within the budget and never restarts; the fitted
            length is saved in the checkpoint (it depends on the machine's speed, not only on
            the seed).
        threads: Torch CPU threads (None: torch's default).
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    restart_epochs: int = 0
    plateau_patience: int | None = None
    grad_clip: float | None = 5.0
    ema_decay: float | None = None
    val_fraction: float = 0.1
    patience: int | None = None
    select: str = "auto"
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    chunk_size: int = 20_000
    cache_limit_gb: float = 4.0
    max_showers: int | None = None
    max_minutes: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.select not in ("auto", "best", "last"):
            raise ConfigError(f"select must be auto, best or last, got {self.select!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.schedule not in ("cosine", "onecycle", "plateau", "none"):
            raise ConfigError(f"schedule must be cosine, onecycle, plateau or none, got {self.schedule!r}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must be between 0 and 1")
        if self.epochs < 1 or self.batch_size < 1 or self.chunk_size < 1:
            raise ConfigError("epochs, batch_size and chunk_size must be at least 1")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_showers is not None and self.max_showers < 2:
            raise ConfigError(f"max_showers must be at least 2, got {self.max_showers}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.plateau_patience is not None and (self.plateau_patience < 1 or self.schedule != "cosine"):
            raise ConfigError("plateau_patience needs the cosine schedule and at least 1 epoch")


def _make_optimizers(model: Surrogate, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per parameter group the family declares (a single ``"model"`` group for most).

    Adam's fused kernel does the same arithmetic as its loop over tensors in one pass: on a CPU
    thread it steps the ds2 diffusion model's 8.7M parameters in about a fifth of the time, which
    matters most where each process steps the whole model for a share of the batch (torchrun).
    """
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizers = {}
    for name, (params, extra) in model.optimizer_groups().items():
        params = list(params)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
        settings = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay, "fused": fused or None, **extra}
        optimizers[name] = kind(params, **settings)
    return optimizers


def _make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    if cfg.schedule == "cosine":
        cycle = (cfg.restart_epochs or cfg.epochs) * steps_per_epoch
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=max(cycle, 1))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.learning_rate, total_steps=max(cfg.epochs * steps_per_epoch, 2)
        )
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    return None


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_path: Path
    epochs_done: int
    best_val_loss: float
    history: list[dict[str, float]]
    stopped_because: str
    main_process: bool = True  # False in the other processes of a torchrun run (they write nothing)


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    with atomic_output(path, force=True) as tmp:
        Path(tmp).write_text(buffer.getvalue())


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_output(path, force=True) as tmp:
        torch.save(state, tmp)


def train(
    model: Surrogate | None,
    data_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on a CaloChallenge file, checkpointing into ``run_dir``.

    Args:
        model: A freshly built surrogate. When resuming, the checkpoint's model is used; a model
            given then must have the saved family and config (None: take the saved one).
        data_path: Training file (its conditions must include the model's condition names).
        run_dir: Folder for ``checkpoint.pt``, ``model.pt``, ``log.csv``, ``train_config.json``.
        config: Loop settings. When resuming: None takes the saved ones; given ones must equal them.
        resume: Continue from ``run_dir/checkpoint.pt``, on the same data.
        force: Start afresh in a ``run_dir`` that already holds a run.
        progress: Show a progress bar.
        on_epoch: Called after each epoch with its number and log row (tests use it to interrupt).

    Raises:
        OutputExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``force`` is set, or
            another job is writing into it.
        CheckpointError: Resuming without a readable checkpoint, with other settings or data than
            the saved run, or data of another geometry.
    """
    run = Path(run_dir)
    if not resume and (run / CHECKPOINT).exists() and not force:
        raise OutputExistsError(
            f"{run} already holds a training run; use --resume to continue it or --force to restart"
        )
    processes = from_environment()
    if not processes.is_main:  # process 0 holds the folder for all of them
        return _train(model, Path(data_path), run, config, resume, False, on_epoch, processes)
    with folder_lock(run, "a training run"):
        return _train(model, Path(data_path), run, config, resume, progress, on_epoch, processes)


def _data_fingerprint(path: Path, n_showers: int, n_voxels: int) -> dict[str, Any]:
    """What identifies a training file across a resume (its path may change, its content may not)."""
    return {"path": str(path.resolve()), "n_showers": n_showers, "n_voxels": n_voxels, "bytes": path.stat().st_size}


def _load_for_resume(
    ckpt_path: Path, model: Surrogate | None, config: TrainConfig | None
) -> tuple[dict[str, Any], Surrogate, TrainConfig]:
    """The saved state, model and loop settings; refuses a model or settings that differ from them."""
    if not ckpt_path.exists():
        raise CheckpointError(f"{ckpt_path.parent}: no {CHECKPOINT} to resume from")
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved = surrogate_from_checkpoint(state["model"], str(ckpt_path))
        saved_config = config_from_dict(TrainConfig, state["train_config"], where=f"{ckpt_path} train config")
    except CheckpointError:
        raise
    except Exception as err:  # truncated, corrupt or foreign file: torch and pickle raise many kinds
        reason = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:120]
        raise CheckpointError(
            f"{ckpt_path}: cannot be read as a checkpoint ({type(err).__name__}: {reason}); "
            "use --force to restart the run"
        ) from err
    changed = []
    if model is not None:
        if model.family != saved.family:
            changed.append(f"model {saved.family} -> {model.family}")
        new, old = dataclasses.asdict(model.config), dataclasses.asdict(saved.config)
        changed += [f"model.{k} {old[k]!r} -> {new[k]!r}" for k in new if k in old and new[k] != old[k]]
    if config is not None:
        new, old = dataclasses.asdict(config), dataclasses.asdict(saved_config)
        changed += [f"train.{k} {old[k]!r} -> {new[k]!r}" for k in new if new[k] != old[k]]
    if changed:
        raise CheckpointError(
            f"{ckpt_path.parent}: --resume continues the saved run as it was, but these differ from it: "
            f"{', '.join(changed)}; drop them, or start a new run with --force"
        )
    return state, saved, saved_config


@dataclass
class _Data:
    """The training file as the loop uses it: this process's training and validation streams, the
    number of training showers (all processes together), the steps per epoch and the fingerprint."""

    train: ShowerStream
    val: ShowerStream
    n_train: int
    n_total: int
    steps_per_epoch: int
    fingerprint: dict[str, Any]


def _data(
    data_path: Path, model: Surrogate, config: TrainConfig, saved: dict[str, Any] | None, processes: Processes = SINGLE
) -> _Data:
    """Check the file against the model (and, on resume, the saved run's data) and split it."""
    with ShowerFile(data_path, conditions=model.condition_names[1:]) as f:
        from calosurrogate.geometry import geometries_with_voxels

        if f.n_voxels != model.geometry.n_voxels:
            raise CheckpointError(
                f"{data_path}: {f.n_voxels} voxels per shower (matches {geometries_with_voxels(f.n_voxels) or 'no built-in'}), "
                f"but the model is for {model.geometry.name} ({model.geometry.n_voxels} voxels)"
            )
        if f.n_showers < 2:
            raise ShowerFileError(data_path, SHOWERS, f"holds {f.n_showers} shower(s); training needs at least 2")
        n_total = f.n_showers if config.max_showers is None else min(config.max_showers, f.n_showers)
        fingerprint = _data_fingerprint(data_path, f.n_showers, f.n_voxels)
    if saved is not None and any(saved[k] != fingerprint[k] for k in ("n_showers", "n_voxels", "bytes")):
        raise CheckpointError(
            f"{data_path}: --resume continues on the data the run was trained on, {saved['path']} "
            f"({saved['n_showers']} showers, {saved['bytes']} bytes); this file has "
            f"{fingerprint['n_showers']} showers and {fingerprint['bytes']} bytes"
        )
    n_train = n_total - max(1, int(n_total * config.val_fraction))
    if n_train < config.batch_size:
        raise ConfigError(f"{data_path}: {n_train} training showers, fewer than one batch of {config.batch_size}")
    world = processes.world_size
    if config.batch_size % world:
        raise ConfigError(f"batch_size {config.batch_size} is the batch of all {world} processes together: "
                          f"it must be a multiple of {world}")  # fmt: skip
    batch = config.batch_size // world
    cache = n_total * model.geometry.n_voxels * 4 / world <= config.cache_limit_gb * 1e9
    names = model.condition_names

    def stream(start: int, stop: int, batch_size: int, rank: int | None = None) -> ShowerStream:
        lo, hi = processes.share(start, stop, rank)
        return ShowerStream(data_path, names, lo, hi, batch_size, config.chunk_size, cache)

    # Every process takes as many steps as the one with the fewest batches (shares differ by a shower).
    steps = min(stream(0, n_train, batch, rank).n_batches() for rank in range(world))
    return _Data(stream(0, n_train, batch), stream(n_train, n_total, max(config.batch_size, 2048) // world),
                 n_train, n_total, steps, fingerprint)  # fmt: skip


# The preprocessing is fitted on at most 50,000 training showers and at most this many bytes of
# float32 voxels: ds3's 40,500 voxels then take 12,345 showers, not 8 GB and its working copies.
FIT_BYTES = 2e9


def _fit_preprocessing(model: Surrogate, data_path: Path, n_train: int, chunk_size: int) -> None:
    """A new run's preprocessing, from (at most 50,000 of, and 2 GB of) the training showers, and
    its condition range (from all of them)."""
    n_fit = min(n_train, 50_000, int(FIT_BYTES // (4 * model.geometry.n_voxels)))
    fit_stream = ShowerStream(data_path, model.condition_names, 0, n_fit, 1, chunk_size, False)
    model.fit_preprocessing(*fit_stream.all())
    model.condition_range = _condition_range(data_path, model.condition_names, n_train, chunk_size)


# Sampling calibrations (a diffusion model's posterior variance) are measured on at most this many
# validation showers (showers the weights were not fitted to), and on at most this many bytes of
# float32 voxels: on ds3 one network pass per shower and noise level costs 30 times ds2's.
CALIBRATION_SHOWERS = 10_000
CALIBRATION_BYTES = 5e8


def _calibrated(
    state: dict[str, Any], data_path: Path, data: _Data, config: TrainConfig, device: torch.device, precision: str
) -> dict[str, Any]:
    """The kept weights' model file after :meth:`Surrogate.calibrate_sampling` on validation showers."""
    model = surrogate_from_checkpoint(state)
    stop = min(data.n_total, data.n_train + _calibration_showers(model))
    _calibrate_on(model, data_path, data.n_train, stop, config.chunk_size, device, precision)
    return model.checkpoint_dict()


def _calibration_showers(model: Surrogate, showers: int = CALIBRATION_SHOWERS) -> int:
    return max(1, min(showers, int(CALIBRATION_BYTES // (4 * model.geometry.n_voxels))))


def _calibrate_on(model: Surrogate, data_path: Path, start: int, stop: int, chunk_size: int, device: torch.device,
                  precision: str) -> None:  # fmt: skip
    showers, conditions = ShowerStream(data_path, model.condition_names, start, stop, 1, chunk_size, False).all()
    model.to(device).eval()
    with autocast_context(device, precision):
        model.calibrate_sampling(showers.to(device), conditions.to(device))


def calibrate(
    model: Surrogate,
    data_path: str | os.PathLike[str],
    showers: int = CALIBRATION_SHOWERS,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> Surrogate:
    """Measure what a trained model's sampling needs (:meth:`Surrogate.calibrate_sampling`) on the
    last ``showers`` showers of a file (fewer where they pass ``CALIBRATION_BYTES`` of voxels): for
    the training file, showers the weights were not fitted to when they are its validation showers.
    Training does this itself; this is for models trained before a family needed it. Returns the
    model, changed in place (weights untouched).

    Raises:
        ShowerFileError: If the file cannot be read, has another voxel count or holds no showers.
    """
    data_path = Path(data_path)
    with ShowerFile(data_path, model.geometry, conditions=model.condition_names[1:]) as f:
        n = f.n_showers
    if n < 1:
        raise ShowerFileError(data_path, SHOWERS, "holds no showers to calibrate on")
    device = resolve_device(device)
    showers = _calibration_showers(model, showers)
    chunk_size = TrainConfig.chunk_size
    _calibrate_on(model, data_path, max(0, n - showers), n, chunk_size, device, resolve_precision(precision, device))
    return model


def _write_train_config(run: Path, config: TrainConfig, model: Surrogate, device: torch.device, precision: str) -> None:
    import json

    record = {"train": dataclasses.asdict(config), "model": model.checkpoint_dict()["config"], "family": model.family,
              # what "auto" became on this machine (a resumed run may resolve it anew)
              "resolved": {"device": str(device), "precision": precision}}  # fmt: skip
    with atomic_output(run / "train_config.json", force=True) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2))


def _train(
    model: Surrogate | None,
    data_path: Path,
    run: Path,
    config: TrainConfig | None,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    processes: Processes = SINGLE,
) -> TrainResult:
    ckpt_path = run / CHECKPOINT
    state: dict[str, Any] | None = None
    if resume:
        state, model, config = _load_for_resume(ckpt_path, model, config)
    if model is None:
        raise ConfigError("no model to train: build one (build_surrogate) or resume a saved run")
    config = config or TrainConfig()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    started = join(processes, device)
    try:
        if processes.parallel and device.type == "cuda":
            device = torch.device("cuda", processes.local_rank)
        return _train_on(model, data_path, run, config, state, device, progress, on_epoch, processes)
    finally:
        leave(started)


def _train_on(
    model: Surrogate,
    data_path: Path,
    run: Path,
    config: TrainConfig,
    state: dict[str, Any] | None,
    device: torch.device,
    progress: bool,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    processes: Processes,
) -> TrainResult:
    ckpt_path = run / CHECKPOINT
    # "auto" is resolved here, per machine, and the config keeps "auto": a run resumed on a
    # machine with native bf16 (AMX, CUDA) uses it there.
    precision = resolve_precision(config.precision, device)
    autocast_context(device, precision)  # validates the precision for this device early
    data = _data(data_path, model, config, state.get("data") if state is not None else None, processes)
    if state is not None and state.get("processes", 1) != processes.world_size:
        raise CheckpointError(
            f"{run}: the run was trained by {state.get('processes', 1)} process(es) and is resumed by "
            f"{processes.world_size}: each reads its own share of the file, so resume with "
            f"{state.get('processes', 1)} (calo train --nproc)"
        )
    if state is None:
        _fit_preprocessing(model, data_path, data.n_train, config.chunk_size)
    model.to(device)
    processes.copy_from_main(model)  # one starting point for all

    # Optimisers, schedules and EMA: new, or as the checkpoint left them.
    optimizers = _make_optimizers(model, config)
    schedulers = {name: _make_scheduler(opt, config, data.steps_per_epoch) for name, opt in optimizers.items()}
    ema = copy.deepcopy(model) if config.ema_decay else None
    history: list[dict[str, float]] = []
    best_val, best_state, start_epoch, stale = math.inf, None, 0, 0
    if state is not None:
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
            if schedulers[name] is not None and state["schedulers"].get(name) is not None:
                schedulers[name].load_state_dict(state["schedulers"][name])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        history = list(state["history"])
        best_val, start_epoch, stale = state["best_val"], state["epoch"], state["stale"]
        best_state = state["best_model"]
    elif processes.is_main:
        _write_train_config(run, config, model, device, precision)

    noise = model.training_noise_mev()
    started = time.monotonic()
    seconds_before = history[-1]["seconds"] if history else 0.0  # log.csv counts the whole run's time
    stopped = "epochs"
    for epoch in range(start_epoch, config.epochs):
        # Every random draw is seeded from (seed, epoch, process): a resumed run continues as an
        # uninterrupted one, and the processes draw different noise.
        epoch_seed = config.seed * 100_003 + epoch + 1_000_003 * processes.rank
        torch.manual_seed(epoch_seed)
        shuffle = torch.Generator().manual_seed(epoch_seed)
        noise_gen = torch.Generator().manual_seed(epoch_seed + 7)
        steps_before = {name: sch.last_epoch for name, sch in schedulers.items() if sch is not None}
        update = _updater(optimizers, schedulers, config, device, epoch, processes)
        means = _run_epoch(model, ema, data.train, data.steps_per_epoch, update, shuffle, noise_gen, noise, device,
                           precision, config, f"epoch {epoch + 1}/{config.epochs}", progress, processes)  # fmt: skip
        if config.max_minutes is not None:
            elapsed = processes.from_main(time.monotonic() - started, device)
            steps = {name: sch.last_epoch - steps_before[name] for name, sch in schedulers.items() if sch is not None}
            _fit_cosine_to_budget(schedulers, config, elapsed, epoch + 1 - start_epoch, epoch + 1, steps)
        judged = ema if ema is not None else model
        val_loss = _validate(judged, data.val, device, config, noise, processes)
        if config.schedule == "plateau":
            for scheduler in schedulers.values():
                scheduler.step(val_loss)
        row = {"epoch": epoch + 1, "train_loss": means.pop("loss"), "val_loss": val_loss,
               **{f"train_{key}": value for key, value in means.items()},
               "lr": next(iter(optimizers.values())).param_groups[0]["lr"],
               "seconds": seconds_before + time.monotonic() - started}  # fmt: skip
        history.append(row)

        # Which weights model.pt keeps, then the checkpoint and the log.
        keep_last = config.select == "last" or (config.select == "auto" and model.adversarial)
        if val_loss < best_val:
            best_val, stale = val_loss, 0
        else:
            stale += 1
        if stale == 0 or keep_last:
            best_state = judged.checkpoint_dict()
        if config.plateau_patience and stale and stale % config.plateau_patience == 0:
            _slow_restarts(schedulers)
        if processes.is_main:
            _save_checkpoint(ckpt_path, {
                "model": model.checkpoint_dict(), "train_config": dataclasses.asdict(config),
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "schedulers": {name: sch.state_dict() for name, sch in schedulers.items() if sch is not None},
                "ema": ema.state_dict() if ema is not None else None,
                "history": history, "best_val": best_val, "best_model": best_state, "epoch": epoch + 1,
                "stale": stale, "data": data.fingerprint, "processes": processes.world_size,
            })  # fmt: skip
            _write_log(run / LOG, history)
        processes.barrier()  # no process starts an epoch whose predecessor is not saved
        if progress:
            tqdm.write(f"epoch {epoch + 1}: train {row['train_loss']:.4f}  val {val_loss:.4f}  lr {row['lr']:.2e}")
        if on_epoch is not None:
            on_epoch(epoch + 1, row)

        if config.patience is not None and stale >= config.patience:
            stopped = "early stopping"
            break
        elapsed = processes.from_main(time.monotonic() - started, device)
        epoch_seconds = elapsed / (epoch + 1 - start_epoch)
        if config.max_minutes is not None and elapsed + epoch_seconds > config.max_minutes * 60:
            stopped = "time budget"
            break
    assert best_state is not None
    if processes.is_main:
        if type(model).calibrate_sampling is not Surrogate.calibrate_sampling:  # a family that measures something
            best_state = _calibrated(best_state, data_path, data, config, device, precision)
        with atomic_output(run / MODEL, force=True) as tmp:
            torch.save(best_state, tmp)
    processes.barrier()
    return TrainResult(run, run / MODEL, len(history), best_val, history, stopped, processes.is_main)


def _run_epoch(
    model: Surrogate, ema: Surrogate | None, stream: ShowerStream, steps: int,
    update: Callable[[str, torch.Tensor], None], shuffle: torch.Generator, noise_gen: torch.Generator, noise: float,
    device: torch.device, precision: str, config: TrainConfig, description: str, progress: bool,
    processes: Processes = SINGLE,
) -> dict[str, float]:  # fmt: skip
    """``steps`` batches of the training showers; returns the mean of each logged scalar (``"loss"``
    among them) over the showers of all processes."""
    model.train()
    sums: dict[str, float] = {}
    count = 0
    batches = itertools.islice(stream.batches(shuffle), steps)
    bar = tqdm(batches, total=steps, desc=description, disable=not progress, leave=False)
    for showers, conds in bar:
        showers = dequantize(showers, noise, noise_gen).to(device)
        conds = conds.to(device)
        with autocast_context(device, precision):
            logged = model.training_step(showers, conds, update)
        if ema is not None:
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                    p_ema.lerp_(p, 1 - config.ema_decay)
        for key, value in logged.items():
            sums[key] = sums.get(key, 0.0) + float(value) * len(showers)
        count += len(showers)
        bar.set_postfix(loss=f"{float(logged['loss']):.4f}")
    *totals, count = processes.sum([*sums.values(), count], device)
    return {key: value / max(count, 1) for key, value in zip(sums, totals, strict=True)}


def _condition_range(path: Path, names: tuple[str, ...], stop: int, chunk_size: int) -> tuple[list[float], list[float]]:
    """Lowest and highest value of each condition column over the training showers (read without voxels)."""
    low, high = None, None
    with ShowerFile(path, conditions=names[1:]) as f:
        for lo in range(0, stop, chunk_size):
            block = f.read_conditions(lo, min(lo + chunk_size, stop))
            low = block.min(axis=0) if low is None else np.minimum(low, block.min(axis=0))
            high = block.max(axis=0) if high is None else np.maximum(high, block.max(axis=0))
    assert low is not None and high is not None
    return [float(v) for v in low], [float(v) for v in high]


def _fit_cosine_to_budget(
    schedulers: dict[str, Any],
    config: TrainConfig,
    elapsed_s: float,
    epochs_run: int,
    epochs_done: int,
    steps: dict[str, int],
) -> None:
    """Stretch or shrink the cosine cycle so that it ends when the time budget does.

    Called after every epoch: the remaining epochs are estimated from the mean epoch time so far
    (10% kept for validation), so a slow first epoch (caching, a busy machine) does not end the
    cycle early, and the cycle always reaches past the next epoch, so the rate never restarts
    within the budget. ``steps`` is what each scheduler stepped in the last epoch, measured, not
    derived from the batch count: a GAN's generator steps once per ``n_critic`` batches.
    """
    if config.schedule != "cosine" or config.restart_epochs or config.max_minutes is None:
        return
    mean_epoch_s = elapsed_s / max(epochs_run, 1)
    remaining = max(0.0, config.max_minutes * 60 - elapsed_s) / (1.1 * mean_epoch_s)
    for name, taken in steps.items():  # the schedulers that exist
        scheduler = schedulers[name]
        done, per_epoch = scheduler.T_cur, max(taken, 1)
        planned = done + int(min(config.epochs - epochs_done, remaining)) * per_epoch
        # One epoch of slack: the next epoch can take a step more than the last (a partial batch).
        scheduler.T_0 = scheduler.T_i = max(planned, done + 2 * per_epoch)


def _slow_restarts(schedulers: dict[str, Any]) -> None:
    """Twice as long cosine cycles from now on, the current one stretched in place (its rate
    jumps up no more than a warm restart would)."""
    for scheduler in schedulers.values():
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
            scheduler.T_0 *= 2
            scheduler.T_i *= 2


def _updater(
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    config: TrainConfig,
    device: torch.device,
    epoch: int,
    processes: Processes = SINGLE,
) -> Callable[[str, torch.Tensor], None]:
    """The ``update(group, loss)`` a family's training step calls: check, backward, average over
    the processes, clip, step."""

    def update(name: str, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"epoch {epoch + 1}: the training loss ({name}) is {loss.item()}; lower the learning rate or use fp32"
            )
        optimizer = optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=False):  # backward outside autocast, as torch advises
            loss.backward()
        processes.average_gradients(p for group in optimizer.param_groups for p in group["params"])
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], config.grad_clip)
        optimizer.step()
        if schedulers[name] is not None and config.schedule != "plateau":
            schedulers[name].step()

    return update


@torch.no_grad()
def _validate(
    model: Surrogate, stream: ShowerStream, device: torch.device, config: TrainConfig, noise: float,
    processes: Processes = SINGLE,
) -> float:  # fmt: skip
    """Mean validation loss per shower over the validation showers of all processes."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 99)
    total, count = 0.0, 0
    for showers, conds in stream.batches(None):
        showers = dequantize(showers, noise, generator).to(device)
        with autocast_context(device, config.precision):
            loss = model.loss(showers, conds.to(device))
        total += float(loss.float().sum())
        count += len(showers)
    total, count = processes.sum([total, count], device)
    return total / max(count, 1)


__all__ = [
    "CHECKPOINT",
    "LOG",
    "MODEL",
    "TrainConfig",
    "TrainResult",
    "resolve_device",
    "train",
]
