"""Fit the fast engine's GFlash coefficients to Geant4 showers of the same detector (issue 21).

Geant4 showers at fixed energies (1, 10, 100 GeV; the files bench_realism_gap.py keeps in its
--workdir, made here if missing) give the targets: the mean longitudinal profile (layer energy
over incident energy), the mean radial profile, and the response. The fast engine's expected
showers (``ShowerSimulator.mean_showers``: the profiles before the sampling spots, which leave
the means unchanged) are fitted to them by Nelder-Mead over the coefficients of
``GFlashCoefficients`` and the response, minimising the squared relative differences in the
layers and radial bins holding at least 0.5% of the energy, and in the first layer and the
innermost radial bin whatever they hold. A second stage simulates whole showers
(sampling spots and read-out threshold included) and fits the spot energy to Geant4's resolution,
then scales the response to Geant4's (the threshold takes a little of the mean the first stage
fitted). The fitted values are printed as the Python to paste into ``simulate/detectors.py`` and
saved with the before/after differences.

``--stage spot`` keeps the shipped coefficients and profile tables and refits only the second
stage, the spot energy and the response, to Geant4 at 1 TeV as well (what a change of the engine's
fluctuations needs; the means are the first stage's): results/calibration_GEOMETRY_spot.json.

Run: .venv/bin/python benchmarks/calibrate_fast_engine.py [--geometry ds2] [--workdir /tmp/realism] [--workers 2]
        [--stage all|spot]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.data import read_showers
from calosurrogate.geometry import default_min_energy
from calosurrogate.metrics import apply_threshold
from calosurrogate.simulate import ShowerSimulator, get_detector
from calosurrogate.simulate.detectors import uncalibrated
from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file
from calosurrogate.simulate.gflash import PUBLISHED, GFlashCoefficients

FIXED = {1_000: 400, 10_000: 200, 100_000: 40}  # MeV: showers (bench_realism_gap.py's files)
SPOT_ONLY = {1_000_000: 60}  # also judged by the second stage alone: resolution, no profile fit there
FITTED = [f.name for f in dataclasses.fields(GFlashCoefficients)] + ["nominal_response"]
SHARE = 0.005


def _profiles(layers: np.ndarray, radial: np.ndarray, energies: np.ndarray) -> dict[str, np.ndarray]:
    return {"longitudinal": (layers / energies[:, None]).mean(0), "radial": (radial / energies[:, None]).mean(0)}


def _totals(showers: np.ndarray, energies: np.ndarray, geometry) -> dict[str, float]:
    ratio = apply_threshold(showers.astype(np.float64), default_min_energy(geometry)).sum(1) / energies
    return {"response": float(ratio.mean()), "resolution": float(ratio.std(ddof=1) / ratio.mean())}


def geant4_targets(path: Path, geometry) -> dict[str, np.ndarray]:
    batch = read_showers(path)
    x = apply_threshold(batch.showers.astype(np.float64), default_min_energy(geometry))
    energies = batch.incident_energies.reshape(-1)
    layers = np.stack([x[:, geometry.layer_slice(i)].sum(1) for i in range(geometry.n_layers)], axis=1)
    profiles = _profiles(layers, x.reshape(len(x), *geometry.shape).sum(axis=(1, 2)), energies)
    return profiles | _totals(batch.showers, energies, geometry)


def engine_totals(detector, energy_mev: float, n: int) -> dict[str, float]:
    """Response and resolution of whole simulated showers (spots and threshold included)."""
    energies, showers = ShowerSimulator(detector).sample(n, f"fixed:{energy_mev}MeV", seed=int(energy_mev))
    return _totals(showers, energies.reshape(-1), detector.geometry)


def engine_profiles(detector, energy_mev: float, n: int, seed: int) -> dict[str, np.ndarray]:
    """The engine's mean profiles at one energy, with common random numbers (same seed every call)."""
    energies = np.full(n, float(energy_mev))
    means, layers = ShowerSimulator(detector).mean_showers(energies, np.random.default_rng(seed))
    return _profiles(layers, means.reshape(n, *detector.geometry.shape).sum(axis=(1, 2)), energies)


def with_values(detector, values: np.ndarray):
    named = dict(zip(FITTED, map(float, values), strict=True))
    response = named.pop("nominal_response")
    return dataclasses.replace(detector, coefficients=GFlashCoefficients(**named), nominal_response=response)


def differences(detector, targets: dict[int, dict[str, np.ndarray]], n: int) -> dict[str, dict[str, np.ndarray]]:
    """Relative differences engine / Geant4 - 1 in the bins with at least SHARE of the energy."""
    out = {}
    for energy, target in targets.items():
        ours = engine_profiles(detector, energy, n, seed=energy)
        out[energy] = {}
        for kind in ("longitudinal", "radial"):
            keep = target[kind] >= SHARE * target[kind].sum()
            keep[0] = True  # the first layer (innermost ring) is where the entry deposit goes: always judged
            out[energy][kind] = ours[kind][keep] / target[kind][keep] - 1
    return out


def over_geant4(detector, energy_mev: float, target: dict, n: int) -> dict[str, float]:
    """The engine's response and resolution at one energy over Geant4's (one simulation)."""
    ours = engine_totals(detector, energy_mev, n)
    return {k: ours[k] / target[k] for k in ("response", "resolution")}


def fit_spot(detector, targets: dict[int, dict], n: int):
    """``detector`` with the spot energy that gives Geant4's resolution (least squares in log over the
    energies), then its response scaled to Geant4's."""

    def resolution_loss(spot: float) -> float:
        candidate = dataclasses.replace(detector, spot_energy_mev=spot)
        return sum(np.log(engine_totals(candidate, e, n)["resolution"] / t["resolution"]) ** 2
                   for e, t in targets.items())  # fmt: skip

    spot = float(minimize_scalar(resolution_loss, bounds=(0.5, 12.0), method="bounded", options={"xatol": 0.02}).x)
    fitted = dataclasses.replace(detector, spot_energy_mev=spot)
    scale = np.mean([t["response"] / engine_totals(fitted, e, n)["response"] for e, t in targets.items()])
    return dataclasses.replace(fitted, nominal_response=fitted.nominal_response * float(scale))


def refit_spot(shipped, targets: dict[int, dict], args) -> None:
    """The second stage alone on the shipped engine; before/after resolution and response per energy."""
    fitted = fit_spot(shipped, targets, args.n)
    report = {}
    for label, detector in (("shipped", shipped), ("refitted", fitted)):
        report[label] = {f"{e / 1e3:g} GeV": over_geant4(detector, e, t, args.n) for e, t in targets.items()}
    values = {
        "spot_energy_mev": round(fitted.spot_energy_mev, 3),
        "nominal_response": round(fitted.nominal_response, 5),
    }
    print("over Geant4 (response, resolution):", report, "\nfitted:", values)
    data = {"geometry": args.geometry, "stage": "spot",
            "geant4_files": {f"{e / 1e3:g} GeV": n for e, n in (FIXED | SPOT_ONLY).items()},
            "geant4_resolution": {f"{e / 1e3:g} GeV": t["resolution"] for e, t in targets.items()},
            "engine_showers_per_energy": args.n,
            "before": {"spot_energy_mev": shipped.spot_energy_mev, "nominal_response": shipped.nominal_response},
            "fitted": values, "over_geant4": report}  # fmt: skip
    command = (
        f"python benchmarks/calibrate_fast_engine.py --geometry {args.geometry} --workdir {args.workdir} --stage spot"
    )
    print("wrote", write_result(f"calibration_{args.geometry}_spot", data, command))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/realism"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n", type=int, default=400, help="engine showers per energy and evaluation")
    parser.add_argument("--stage", choices=["all", "spot"], default="all")
    args = parser.parse_args()
    shipped = get_detector(args.geometry)
    published = uncalibrated(shipped)
    args.workdir.mkdir(parents=True, exist_ok=True)
    targets = {}
    for energy, n in (FIXED | (SPOT_ONLY if args.stage == "spot" else {})).items():
        path = args.workdir / f"geant4_{energy}MeV_{n}.h5"
        if not path.exists():
            simulate_geant4_to_file(shipped, n, path, f"fixed:{energy}MeV", seed=11, workers=args.workers,
                                    chunk_size=max(5, n // 8), progress=False)  # fmt: skip
        targets[energy] = geant4_targets(path, shipped.geometry)
    if args.stage == "spot":
        return refit_spot(shipped, targets, args)

    def loss(values: np.ndarray) -> float:
        named = dict(zip(FITTED, values, strict=True))
        if min(v for k, v in named.items() if not k.startswith("entry")) <= 0 or named["entry_deposit_mev"] < 0:
            return 1e6
        diffs = differences(with_values(published, values), targets, args.n)
        return float(sum(np.mean(d[kind] ** 2) for d in diffs.values() for kind in d))

    # the entry deposit starts near a minimum-ionising electron's (the simplex's first step scales with it)
    start = np.array([getattr(dataclasses.replace(PUBLISHED, entry_deposit_mev=8.0, entry_power=0.3), name)
                      for name in FITTED[:-1]] + [1.0])  # fmt: skip
    before = loss(np.array([getattr(PUBLISHED, name) for name in FITTED[:-1]] + [1.0]))
    fit = minimize(loss, start, method="Nelder-Mead",
                   options={"maxiter": 1500, "xatol": 1e-4, "fatol": 1e-7, "adaptive": True})  # fmt: skip
    fitted = with_values(published, fit.x)

    fitted = fit_spot(fitted, targets, args.n)
    spot = fitted.spot_energy_mev
    report = {}
    for label, detector in (("published", published), ("fitted", fitted)):
        diffs = differences(detector, targets, args.n)
        report[label] = {
            f"{energy / 1e3:g} GeV": {kind: float(np.max(np.abs(d[kind]))) for kind in d}
            | {f"{k}_over_geant4": v for k, v in over_geant4(detector, energy, targets[energy], args.n).items()}
            for energy, d in diffs.items()
        }  # fmt: skip
    values = dict(zip(FITTED, (round(float(v), 5) for v in fit.x), strict=True))
    values["nominal_response"] = round(fitted.nominal_response, 5)
    print("loss", before, "->", fit.fun, fit.message)
    print("largest relative differences (bins with >= 0.5% of the energy):", report)
    response = values.pop("nominal_response")
    print(
        f"\nnominal_response={response},\ncoefficients=GFlashCoefficients({', '.join(f'{k}={v}' for k, v in values.items())}),"
    )
    data = {"geometry": args.geometry, "geant4_files": {f"{e / 1e3:g} GeV": n for e, n in FIXED.items()},
            "engine_showers_per_energy": args.n, "share": SHARE, "loss": {"published": before, "fitted": fit.fun},
            "iterations": int(fit.nit), "fitted": values | {"nominal_response": response, "spot_energy_mev": round(spot, 3)},
            "largest_relative_difference": report}  # fmt: skip
    command = f"python benchmarks/calibrate_fast_engine.py --geometry {args.geometry} --workdir {args.workdir}"
    print("wrote", write_result(f"calibration_{args.geometry}", data, command))


if __name__ == "__main__":
    main()
