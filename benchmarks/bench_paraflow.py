"""ParaFlow's reference study (issue 22): train the MAF on fast-engine photons with a band of the plate
configuration held out, judge it in the band it saw and in the one it did not, infer the plate's
thickness and distance of samples of 1,000 photons, and choose a plate distance through the surrogate.

Every stage keeps its output in --workdir and is skipped when that output exists, so a killed run
resumes (the training from its checkpoint, for up to --minutes more).

Run: .venv/bin/python benchmarks/bench_paraflow.py --minutes 60
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import selected_epoch, tagged, write_result

from calosurrogate.simulate.paraflow import ParaFlowSetup, simulate_paraflow_to_file

HELD_OUT = (("plate_thickness", 0.9, 1.1), ("plate_distance", 65.0, 75.0))
# (d X0, b cm) of the pseudo-experiments: four in the trained band, one in the middle of the held-out one
POINTS = ((0.7, 60.0), (1.3, 60.0), (0.7, 82.0), (1.3, 82.0), (1.0, 70.0))
FREE = ("plate_thickness", "plate_distance")


def make_data(work: Path, n_train: int, n_eval: int, n_pseudo: int, sample_size: int) -> dict[str, Path]:
    """Training file (band held out), judging files in and out of the band, one file per point."""
    setup = ParaFlowSetup()
    band = setup.with_ranges({name: (lo, hi) for name, lo, hi in HELD_OUT})
    trained = dataclasses.replace(setup, held_out=(HELD_OUT,))
    files = {"train": (n_train, 101, trained, {}), "inband": (n_eval, 102, trained, {}),
             "heldout": (n_eval, 103, band, {})}  # fmt: skip
    for i, (d, b) in enumerate(POINTS):
        files[f"point_{i}"] = (n_pseudo * sample_size, 200 + i, setup, {"plate_thickness": d, "plate_distance": b})
    paths = {}
    for name, (n, seed, chosen, fixed) in files.items():
        paths[name] = work / f"{name}.h5"
        if not paths[name].exists():
            simulate_paraflow_to_file(n, paths[name], seed=seed, fixed=fixed, setup=chosen, progress=False)
    return paths


def train_model(work: Path, train_file: Path, minutes: float, config_file: Path) -> Path:
    """The set-up of ``config_file`` for at most ``minutes`` of training per call."""
    import yaml

    from calosurrogate.geometry import get_geometry
    from calosurrogate.models import build_surrogate
    from calosurrogate.training import TrainConfig, train

    run = work / "run"
    if (run / "done").exists():
        return run / "model.pt"
    loaded = yaml.safe_load(config_file.read_text())
    config = TrainConfig(**{**loaded["train"], "max_minutes": minutes, "seed": 1})
    resume = (run / "checkpoint.pt").exists()
    model = None if resume else build_surrogate("paraflow", get_geometry("paraflow"), loaded["model"],
                                                ("incident_energies", *FREE))  # fmt: skip
    result = train(model, train_file, run, None if resume else config, resume=resume, progress=False)
    (run / "done").write_text(json.dumps({"epochs": result.epochs_done}))
    return result.model_path


def sample_like(model, reference: Path, out: Path) -> float:
    """Showers at the reference file's conditions; the sampling time per shower in ms (0 if made before)."""
    from calosurrogate.sampling import conditions_from_file, sample_to_file

    if out.exists():
        return float(json.loads(out.with_suffix(".json").read_text())["ms_per_shower"])
    conditions = conditions_from_file(reference, model)
    _, seconds = sample_to_file(model, conditions, out, batch_size=1000, precision="fp32", progress=False)
    ms = 1e3 * seconds / len(conditions)
    out.with_suffix(".json").write_text(json.dumps({"ms_per_shower": ms}))
    return ms


def judge(reference: Path, generated: Path, report: Path) -> dict:
    from calosurrogate.evaluation.crystal import evaluate_crystal_files
    from calosurrogate.report.crystal import write_crystal_report

    result = evaluate_crystal_files(reference, generated)
    write_crystal_report(result, report, force=True)
    return {
        "separation": result["separation"],
        "mean_shape_grid": {k: {"largest_relative_difference": v["largest_relative_difference"], "floor": v["floor"]}
                            for k, v in result["mean_shape_grid"].items()},
        "average_image": {k: v for k, v in result["average_image"].items() if k.startswith("central")},
        "showers": result["showers"],
    }  # fmt: skip


def infer_points(model, paths: dict[str, Path], sample_size: int, n_fit: int) -> dict:
    """Pseudo-experiments at each point, and over all points together."""
    from calosurrogate.inference import calibration_with_sandwich, pseudo_experiments
    from calosurrogate.sampling import conditions_from_file

    low, high = model.condition_range
    bounds = {name: (low[j + 1], high[j + 1]) for j, name in enumerate(FREE)}
    per_point, pooled = {}, []
    for i, point in enumerate(POINTS):
        cache = paths[f"point_{i}"].with_suffix(".fits.json")
        if not cache.exists():
            from calosurrogate.data import read_showers

            batch = read_showers(paths[f"point_{i}"], model.geometry, max_showers=n_fit * sample_size,
                                 conditions=list(FREE))  # fmt: skip
            conditions = conditions_from_file(paths[f"point_{i}"], model, n_fit * sample_size)
            start = time.perf_counter()
            result = pseudo_experiments(model, batch.showers, conditions, FREE, bounds, sample_size)
            record = {**result.as_dict(), "seconds_per_fit": (time.perf_counter() - start) / len(result.truth)}
            cache.write_text(json.dumps(record))
        record = json.loads(cache.read_text())
        per_point[f"d={point[0]} b={point[1]}"] = record["summary"] | {"seconds_per_fit": record["seconds_per_fit"],
                                                                        "converged": record["converged"],
                                                                        "samples": record["samples"]}  # fmt: skip
        pooled.append(record)
    summary = {}
    # the trained band only (the held-out point is reported on its own), the converged fits only, as per point;
    # fits cached before the record kept which converged: those with finite errors
    chosen = [r for r, p in zip(pooled, POINTS, strict=True) if p != (1.0, 70.0)]
    ok = [
        np.array(r.get("converged_each", np.isfinite(np.array(r["errors"], dtype=float)).all(1)), bool) for r in chosen
    ]
    for j, name in enumerate(FREE):
        columns = (np.concatenate([np.array(r[key])[k, j] for r, k in zip(chosen, ok, strict=True)])
                   for key in ("truth", "values", "errors", "sandwich_errors"))  # fmt: skip
        summary[name] = calibration_with_sandwich(*columns)
    return {"points": per_point, "trained_band": summary}


DESIGN_THICKNESS = 1.0  # X0


def simulator_scan(distances: np.ndarray, n: int, seed: int = 300) -> list[dict]:
    """The fast engine's truth at each plate distance: the tag's efficiency for converted photons,
    its rate for unconverted ones, their difference (the separation) and the share tagged."""
    from calosurrogate.data import EnergySpectrum
    from calosurrogate.inference.design import converted_tag_loss
    from calosurrogate.simulate.paraflow import ParaFlowSimulator

    simulator = ParaFlowSimulator()
    rows = []
    for i, b in enumerate(distances):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        energy = EnergySpectrum.parse(simulator.setup.default_spectrum).sample(n, rng)
        particles = simulator.particles(energy, np.full(n, DESIGN_THICKNESS), np.full(n, float(b)), rng)
        showers = simulator.crop(simulator.full_images(particles, n, rng)).reshape(n, -1)
        converted = np.zeros(n, bool)
        converted[particles.event[~particles.is_photon]] = True
        tag = converted_tag_loss(showers, simulator.setup.geometry) < 0
        efficiency, fake = tag[converted].mean(), tag[~converted].mean()
        rows.append({"plate_distance": float(b), "efficiency_converted": float(efficiency),
                     "rate_unconverted": float(fake), "separation": float(efficiency - fake),
                     "separation_error": float(np.hypot(np.sqrt(efficiency * (1 - efficiency) / converted.sum()),
                                                        np.sqrt(fake * (1 - fake) / (~converted).sum()))),
                     "share_tagged": float(tag.mean())})  # fmt: skip
    return rows


def design_plate(model, work: Path, n: int) -> dict:
    """The plate distance that best separates converted from unconverted photons by the R9 tag, at a
    thickness of 1 X0, chosen through the surrogate and checked against the fast engine's truth.

    Unconverted photons' showers do not depend on the distance and the conversion probability
    depends on the thickness only, so the tagged share ``p_conv * eff_conv(b) + (1 - p_conv) *
    rate_unconv`` is largest where the separation ``eff_conv(b) - rate_unconv`` is: the surrogate,
    which knows no conversion, maximises the share."""
    from calosurrogate.data import EnergySpectrum
    from calosurrogate.inference import optimise_conditions
    from calosurrogate.inference.design import objective_from_spec
    from calosurrogate.simulate.paraflow import ParaFlowSetup

    cache = work / "design.json"
    if cache.exists():
        return json.loads(cache.read_text())
    rng = np.random.default_rng(400)
    energy = EnergySpectrum.parse(ParaFlowSetup().default_spectrum).sample(n, rng)
    conditions = np.stack([energy, np.full(n, DESIGN_THICKNESS), np.full(n, 70.0)], 1)
    low, high = model.condition_range
    start = time.perf_counter()
    design = optimise_conditions(model, objective_from_spec("converted-tag", model.geometry), conditions, ("plate_distance",),
                                 {"plate_distance": (low[2], high[2])}, start={"plate_distance": 55.0})  # fmt: skip
    seconds = time.perf_counter() - start
    scan = simulator_scan(np.arange(50.0, 90.1, 5.0), 20_000)
    best = max(scan, key=lambda r: r["separation"])
    chosen = simulator_scan(design.values, 20_000, seed=301)[0]
    record = {"thickness_x0": DESIGN_THICKNESS, "showers_per_round": n, "seconds": seconds,
              "surrogate": design.as_dict(), "simulator_scan": scan, "simulator_best": best,
              "simulator_at_choice": chosen}  # fmt: skip
    cache.write_text(json.dumps(record, indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="training budget of each call (a resumed run gets it again)"
    )
    parser.add_argument("--config", default="configs/paraflow-paraflow.yaml", help="model and training set-up")
    parser.add_argument("--n-train", type=int, default=300_000)
    parser.add_argument("--n-eval", type=int, default=10_000, help="showers judged in and out of the band")
    parser.add_argument("--n-pseudo", type=int, default=20, help="pseudo-experiments per point")
    parser.add_argument("--n-fit", type=int, default=8, help="pseudo-experiments fitted per point (of --n-pseudo made)")
    parser.add_argument("--sample-size", type=int, default=1000)
    parser.add_argument("--n-design", type=int, default=1000, help="surrogate showers per round of the design")
    parser.add_argument("--stop-after", choices=["data", "train", "sample", "judge", "infer"], default=None)
    parser.add_argument("--workdir", default="benchmarks/work")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    import torch

    from calosurrogate.models import load_surrogate

    work = Path(args.workdir) / tagged("paraflow", args.tag)
    work.mkdir(parents=True, exist_ok=True)
    paths = make_data(work, args.n_train, args.n_eval, args.n_pseudo, args.sample_size)
    if args.stop_after == "data":
        return
    model_path = train_model(work, paths["train"], args.minutes, Path(args.config))
    if args.stop_after == "train":
        return
    model = load_surrogate(model_path).eval()
    timing = {band: sample_like(model, paths[band], work / f"generated_{band}.h5") for band in ("inband", "heldout")}
    if args.stop_after == "sample":
        return
    judged = {band: judge(paths[band], work / f"generated_{band}.h5", work / f"evaluation_{band}")
              for band in ("inband", "heldout")}  # fmt: skip
    if args.stop_after == "judge":
        return
    inference = infer_points(model, paths, args.sample_size, min(args.n_fit, args.n_pseudo))
    if args.stop_after == "infer":
        return
    design = design_plate(model, work, args.n_design)
    log = json.loads((work / "run" / "done").read_text())
    data = {"geometry": "paraflow", "model": "paraflow", "config_file": args.config,
            "model_config": model.checkpoint_dict()["config"],
            "data": "fast engine", "n_train": args.n_train, "held_out": [list(r) for r in HELD_OUT],
            "train_minutes_budget": args.minutes, "epochs": log["epochs"], "selected_epoch": selected_epoch(work / "run", False),
            "threads": torch.get_num_threads(), "sampling_ms_per_shower_batch_1000": timing, "judged": judged,
            "inference": {"sample_size": args.sample_size, "points": [list(p) for p in POINTS], **inference},
            "design": design}  # fmt: skip
    command = " ".join(["python benchmarks/bench_paraflow.py", *sys.argv[1:]])
    print("wrote", write_result(tagged("paraflow", args.tag), data, command))


if __name__ == "__main__":
    main()
