"""Shared helpers of the benchmark scripts: machine description and JSON results."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from calosurrogate.benchmark import machine_description

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return machine_description()


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def tagged(name: str, tag: str) -> str:
    """``NAME`` or ``NAME_TAG``: results of variants (another model setting, another machine) side by side."""
    return f"{name}_{tag}" if tag else name


def write_result(name: str, data: dict[str, Any], command: str, commit: str | None = None) -> Path:
    """Write ``results/NAME.json`` with the command, machine, commit and date beside the figures."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "command": command, "machine": machine(), "commit": commit or git_commit(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **data}  # fmt: skip
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def diffusion_overrides(assignments: list[str]) -> dict[str, Any]:
    """The diffusion model settings of ``--set KEY=VALUE`` pairs (``model.`` optional; ``PART.KEY`` for
    a part's setting). The flat names of file format 1 are read too (``layer_energies=true``), so the
    commands recorded in results/ run as they are written."""
    import yaml

    from calosurrogate.models.base import merge_settings
    from calosurrogate.models.diffusion.config import config_from_format_1

    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        *parts, name = key.removeprefix("model.").split(".")
        target = nested if parts else flat
        for part in parts:
            target = target.setdefault(part, {})
        target[name] = yaml.safe_load(value)
    return merge_settings(config_from_format_1(flat, "--set"), nested)


def selected_epoch(run_dir: str | Path, adversarial: bool) -> int:
    """The epoch whose weights ``model.pt`` holds: the last for adversarial families, else the one
    with the lowest validation loss (the training loop's ``select="auto"``), read from ``log.csv``."""
    import csv

    with open(Path(run_dir) / "log.csv") as log:
        rows = list(csv.DictReader(log))
    chosen = rows[-1] if adversarial else min(rows, key=lambda row: float(row["val_loss"]))
    return int(chosen["epoch"])


def simulated_data(geometry: str, workdir: str | Path, n_train: int, n_reference: int) -> tuple[Path, Path]:
    """Training (seed 1) and reference (seed 2) simulator files of a geometry, made once and shared
    by every benchmark that trains on it."""
    from calosurrogate.simulate import get_detector, simulate_to_file

    detector = get_detector(geometry)
    data_dir = Path(workdir) / geometry
    data_dir.mkdir(parents=True, exist_ok=True)
    train_file, reference = data_dir / "train.h5", data_dir / "reference.h5"
    if not train_file.exists():
        simulate_to_file(detector, n_train, train_file, seed=1)
    if not reference.exists():
        simulate_to_file(detector, n_reference, reference, seed=2)
    return train_file, reference


def given_or_simulated_data(args) -> tuple[Path, Path]:
    """``--train-file``/``--reference-file`` when given, else the fast engine's files of the geometry.

    A given reference that does not exist yet is waited for (it may still be simulating beside
    the training: it is read only after it)."""
    if not (args.train_file and args.reference_file):
        return simulated_data(args.geometry, args.workdir, args.n_train, args.n_reference)
    return Path(args.train_file), Path(args.reference_file)


def wait_for(path: Path, poll_s: float = 30.0) -> Path:
    """Block until ``path`` exists (a file another job is still writing appears whole)."""
    import time

    while not Path(path).exists():
        print(f"waiting for {path}", flush=True)
        time.sleep(poll_s)
    return Path(path)


def data_source(train_file: str | Path, reference_file: str | Path) -> dict[str, str]:
    """What made a benchmark's training and reference showers (the files' ``generator``) and their
    spectrum, and the training showers: ``{"engine": "geant4" | "fast engine" | ..., "spectrum": ...,
    "train_showers": n}``."""
    import h5py

    engines = set()
    spectra = set()
    for path in (train_file, reference_file):
        with h5py.File(path, "r") as f:
            generator = str(f.attrs.get("generator", "unknown"))
            spectra.add(str(f.attrs.get("energy_spectrum", "unknown")))
        # the fast engine's generator says "not Geant4", so it is recognised first
        engines.add("fast engine" if "parametrized" in generator else "geant4" if "Geant4" in generator else generator)
    with h5py.File(train_file, "r") as f:
        train_showers = int(f["showers"].shape[0])
    return {
        "engine": " + ".join(sorted(engines)),
        "spectrum": " + ".join(sorted(spectra)),
        "train_showers": train_showers,
    }


@functools.cache
def _fit_sample(geometry: str, n_fit: int):
    import torch

    from calosurrogate.simulate import ShowerSimulator, get_detector

    spectrum = "ds1" if geometry.startswith("ds1") else "log-uniform:1GeV:1TeV"
    energies, showers = ShowerSimulator(get_detector(geometry)).sample(n_fit, spectrum, seed=7)
    return torch.as_tensor(showers, dtype=torch.float32), torch.as_tensor(energies, dtype=torch.float32).reshape(-1, 1)


def untrained_model(family: str, geometry: str, n_fit: int = 3000):
    """A family's default model with its preprocessing fitted on ``n_fit`` simulated showers (simulated
    once per geometry) and no training: what the timing benchmarks use, since sampling time depends
    on the architecture, not on the weights."""
    from calosurrogate.geometry import get_geometry
    from calosurrogate.models import build_surrogate

    model = build_surrogate(family, get_geometry(geometry))
    model.fit_preprocessing(*_fit_sample(geometry, n_fit))
    return model


def _snake(key: str) -> str:
    return key.lower().replace(" ", "_")


def worst_separation(separation: dict[str, dict], n: int) -> list[dict]:
    """The N features with the largest separation power, with the reference's own floor beside each."""
    ranked = sorted(separation.items(), key=lambda item: -item[1]["value"])[:n]
    return [{"feature": key, "value": round(e["value"], 4), "floor": e.get("floor") and round(e["floor"], 4)}
            for key, e in ranked]  # fmt: skip


def sample_and_judge(
    model, conditions, reference: Path, out: Path, precision: str, n_eval: int | None, classifier_runs: int = 1
) -> dict[str, Any]:
    """Sample one shower per condition row (batch 10,000) into ``out`` and judge it against the
    reference (:func:`judge`), with the time per shower."""
    from calosurrogate.sampling import sample_to_file

    _, seconds = sample_to_file(
        model, conditions, out, batch_size=10_000, precision=precision, force=True, progress=False
    )
    ms = round(1e3 * seconds / len(conditions), 4)
    return {"ms_per_shower_batch_10000": ms, **judge(model.geometry, reference, out, n_eval, classifier_runs)}


def judge(geometry, reference: Path, generated: Path, n_eval: int | None, classifier_runs: int = 1) -> dict[str, Any]:
    """Classifier AUCs (mean over ``classifier_runs`` trainings, with their spread when more than
    one), separation of E_tot/E_inc, FPD, CFD and the five worst-separated features of a
    generated file against the reference."""
    import dataclasses

    from calosurrogate.evaluation import EvaluationSettings, evaluate_files

    settings = EvaluationSettings()
    settings.classifier = dataclasses.replace(settings.classifier, runs=classifier_runs)
    settings.metrics = ("histograms", "fpd", "cfd", "cls-high", "cls-low")
    settings.max_showers = n_eval
    evaluation = evaluate_files(reference, generated, geometry, settings)
    spread = {}
    if classifier_runs > 1:
        spread = {f"auc_{kind}_std": evaluation.classifiers[f"cls-{kind}"]["auc_std"] for kind in ("low", "high")}
    return {
        "auc_low": evaluation.classifiers["cls-low"]["auc"], "auc_high": evaluation.classifiers["cls-high"]["auc"],
        **spread,
        "separation_etot_einc": evaluation.separation["E_tot/E_inc"]["value"],
        "fpd_x1e3": evaluation.scalars["FPD x 1e3"]["value"], "fpd_x1e3_error": evaluation.scalars["FPD x 1e3"]["error"],
        **{_snake(k): {"value": v["value"], "floor": v.get("floor")} for k, v in evaluation.scalars.items() if k.startswith("CFD")},
        "worst_separation": worst_separation(evaluation.separation, 5),
    }  # fmt: skip


def mean_profiles(showers, incident_energies, geometry, threshold: bool = True) -> dict[str, Any]:
    """Mean longitudinal and radial profiles of showers (read-out threshold applied), each as energy
    over incident energy with its standard error, and the response, resolution and zero-voxel
    fraction: what the fast engine is calibrated and judged on against Geant4. The resolution is given
    as the standard deviation over the mean and as half the central 68% range over the median."""

    from calosurrogate.geometry import default_min_energy
    from calosurrogate.metrics import apply_threshold

    x = np.asarray(showers, dtype=np.float64)
    x = apply_threshold(x, default_min_energy(geometry)) if threshold else x
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    layers = np.stack([x[:, geometry.layer_slice(i)].sum(1) for i in range(geometry.n_layers)], axis=1) / e_inc[:, None]
    radial = x.reshape(len(x), *geometry.shape).sum(axis=(1, 2)) / e_inc[:, None]
    ratio = x.sum(1) / e_inc
    n = len(x)
    return {
        "longitudinal": layers.mean(0), "longitudinal_se": layers.std(0, ddof=1) / np.sqrt(n),
        "radial": radial.mean(0), "radial_se": radial.std(0, ddof=1) / np.sqrt(n),
        "response": float(ratio.mean()), "resolution": float(ratio.std(ddof=1) / ratio.mean()),
        # half the 16-84% range over the median: a rare shower leaking most of its energy does not rule it
        "resolution_central": float(np.diff(np.quantile(ratio, [0.16, 0.84]))[0] / 2 / np.median(ratio)),
        "zero_voxels": float((x == 0).mean()),
    }  # fmt: skip


def judged_ratios(ours: np.ndarray, target: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """The bins of a profile that are judged (those holding at least ``share`` of ``target``'s energy,
    per row along the last axis) and ``ours / target`` in them: a profile's relative differences where
    they mean something, not in near-empty tails."""
    keep = target >= share * target.sum(axis=-1, keepdims=True)
    return keep, ours[keep] / target[keep]
