"""Fit the fast engine's profile tables to Geant4 showers of the same detector (issue 21).

The GFlash coefficients (calibrate_fast_engine.py) leave residual differences in the mean
profiles that their functional forms cannot absorb. This script tabulates them on a grid in ln E
over the Geant4 files with a spectrum (and at the energy of each file at one energy).
The value at a tabulated energy answers for the mean profile of the showers around it, each
weighted by its linear-interpolation weight on that energy, so the tables hold at the ends of the
spectrum too. The engine makes its expected showers at exactly the Geant4 showers' energies
(``ShowerSimulator.mean_showers``: the shower-to-shower profile fluctuations without the sampling
spots, which leave the means unchanged; so the engine's random numbers are the same at every
iteration, and the iteration converges instead of chasing noise), and the tables are updated
until the two agree: the layer offsets by the difference Geant4 - engine, the radial factors by the
ratio (a fixed point: the radial renormalisation and the interpolation couple the values). Radial
bins holding less than 1e-4 of the energy take their nearest fitted neighbour's factor.

The tables are written atomically to --out (the file the package ships; an existing one only with
--force), the before/after differences to results/profile_tables_GEOMETRY.json.

Run (the shipped tables; the files are made by `calo simulate --engine geant4`, seeds in their names):
    .venv/bin/python benchmarks/fit_profile_tables.py --geant4 ds2_g4_train.h5 geant4_1-10GeV_20000_seed41.h5 \
    geant4_1000MeV_10000_seed23.h5 geant4_100000MeV_1000_seed24.h5 geant4_1000000MeV_150_seed31.h5 --smoothing 1 --force
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import judged_ratios, write_result

from calosurrogate.data import read_showers
from calosurrogate.geometry import default_min_energy
from calosurrogate.metrics import apply_threshold
from calosurrogate.simulate import ShowerSimulator, get_detector
from calosurrogate.simulate.profile_tables import TABLES_DIR, ProfileTables

MIN_SHARE = 1e-4  # radial bins below this share of the energy are too noisy to fit
JUDGED_SHARE = 0.01  # the realism benchmark's bins
ENGINE_MIN_SHOWERS = 1000  # per file: a small Geant4 file's showers get several engine draws each


def read_files(paths: list[Path], per_decade: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The tables' energies (MeV) and each file's incident energies (MeV) and showers.

    The energies are a grid of ``per_decade`` points per decade (10 ** (j / per_decade) GeV)
    wherever showers with a spectrum lie between neighbouring points, and the energy of each file
    at one energy."""
    energies, showers = [], []
    for path in paths:
        batch = read_showers(path)
        energies.append(batch.incident_energies.reshape(-1).astype(np.float64))
        showers.append(batch.showers)
    spread = np.concatenate([e for e in energies if np.ptp(e) > 0] or [np.empty(0)])
    knots = [e[0] for e in energies if np.ptp(e) == 0]
    if len(spread):
        j = np.arange(
            np.floor(np.log10(spread.min() / 1e3) * per_decade), np.ceil(np.log10(spread.max() / 1e3) * per_decade) + 1
        )
        grid = 1e3 * 10 ** (j / per_decade)
        occupied = (
            np.bincount(np.clip(np.searchsorted(grid, spread) - 1, 0, len(grid) - 2), minlength=len(grid) - 1) > 0
        )
        keep = np.zeros(len(grid), bool)
        keep[:-1] |= occupied
        keep[1:] |= occupied
        knots += list(grid[keep])
    return np.unique(np.round(knots, 3)), energies, showers


def hat_weights(energies: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Each shower's linear-interpolation weights (in ln E) on the tabulated energies: shape
    ``(N, K)``, rows summing to 1; the mean profile the tables' value at a knot answers for."""
    x = np.clip(np.log(energies), np.log(knots[0]), np.log(knots[-1]))
    upper = np.clip(np.searchsorted(np.log(knots), x, side="right"), 1, len(knots) - 1)
    lo, hi = np.log(knots[upper - 1]), np.log(knots[upper])
    w_hi = (x - lo) / (hi - lo)
    weights = np.zeros((len(x), len(knots)))
    weights[np.arange(len(x)), upper - 1] = 1 - w_hi
    weights[np.arange(len(x)), upper] += w_hi
    return weights


def second_differences(knots: np.ndarray) -> np.ndarray:
    """Second divided differences in ln E (scaled by the mean spacing): the roughness penalty."""
    x = np.log(knots)
    if len(x) < 3:
        return np.zeros((0, len(x)))
    h = np.diff(x)
    d = np.zeros((len(x) - 2, len(x)))
    for i in range(len(x) - 2):
        d[i, i : i + 3] = [1 / h[i], -(1 / h[i] + 1 / h[i + 1]), 1 / h[i + 1]]
    return d * h.mean()


def shower_profiles(showers: np.ndarray, energies: np.ndarray, geometry, threshold: bool) -> dict[str, np.ndarray]:
    """Each shower's layer and radial energies over its incident energy: ``{kind: (N, n_bins)}``."""
    x = np.asarray(showers, dtype=np.float64)
    x = apply_threshold(x, default_min_energy(geometry)) if threshold else x
    layers = np.stack([x[:, geometry.layer_slice(i)].sum(1) for i in range(geometry.n_layers)], axis=1)
    radial = x.reshape(len(x), *geometry.shape).sum(axis=(1, 2))
    return {"longitudinal": layers / energies[:, None], "radial": radial / energies[:, None]}


class PenalisedFit:
    """Least squares of per-shower values on functions piecewise linear in ln E between the
    tabulated energies, with a roughness penalty on the second differences (``smoothing`` times the
    number of showers of the sparsest knot involved): values at the knots, ``(K, n_bins)``. Without the
    penalty, neighbouring knots share the showers between them and their values zigzag with the
    noise, worst at the ends of the spectrum."""

    def __init__(self, energies: np.ndarray, knots: np.ndarray, smoothing: float) -> None:
        self.weights = hat_weights(energies, knots)
        gram = self.weights.T @ self.weights
        d = second_differences(knots)
        # each roughness term weighs as much as the showers of its sparsest knot: a lone file at one
        # energy (1 TeV, far from the spectrum) is fitted, not smoothed away
        data = np.diag(gram)
        rows = np.array([data[i : i + 3].min() for i in range(len(d))]) if len(d) else np.zeros(0)
        self.system = gram + smoothing * (d.T * rows) @ d + 1e-9 * np.eye(len(knots))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.system, self.weights.T @ values)


def fill_unfitted(log_factors: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Each unfitted bin takes the nearest fitted bin's value (1 where none is fitted)."""
    where = np.flatnonzero(fitted)
    if len(where) == 0:
        return np.zeros_like(log_factors)
    nearest = where[np.abs(np.arange(len(log_factors))[:, None] - where[None, :]).argmin(axis=1)]
    return log_factors[nearest]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--geant4", type=Path, nargs="+", required=True, help="Geant4 files of this detector")
    parser.add_argument("--per-decade", type=int, default=8, help="tabulated energies per decade")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--smoothing", type=float, default=1.0,
                        help="roughness penalty of the profiles in ln E (0.3, 1, 3, 10 tried: 1 judged best)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=TABLES_DIR / "w_si.json")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.out.exists() and not args.force:
        sys.exit(f"{args.out} exists; use --force to replace it")
    base = dataclasses.replace(get_detector(args.geometry), profile_tables=None)
    geometry = base.geometry
    knots, g4_energies, g4_showers = read_files(args.geant4, args.per_decade)
    energies = np.concatenate(g4_energies)
    fit = PenalisedFit(energies, knots, args.smoothing)
    geant4 = shower_profiles(np.concatenate(g4_showers), energies, geometry, threshold=True)
    targets = {kind: fit(v) for kind, v in geant4.items()}
    # the engine's expected shower at every Geant4 shower's energy, averaged over enough draws that a
    # small file (1 TeV) is not left to the engine's own fluctuations; same design, same fit
    repeats = np.concatenate([np.full(len(e), -(-ENGINE_MIN_SHOWERS // len(e))) for e in g4_energies])
    owner = np.repeat(np.arange(len(energies)), repeats)
    edges_mm = np.asarray(geometry.layers[0].r_edges, dtype=float)
    offsets = np.zeros((len(knots), geometry.n_layers))
    log_radial = np.zeros((len(knots), len(edges_mm) - 1))
    history = []
    for iteration in range(args.iterations + 1):
        tables = ProfileTables.from_arrays(knots, offsets, edges_mm, np.exp(log_radial))
        simulator = ShowerSimulator(dataclasses.replace(base, profile_tables=tables))
        means, _ = simulator.mean_showers(energies[owner], np.random.default_rng(1000))
        engine = {kind: np.stack([np.bincount(owner, weights=v[:, j]) for j in range(v.shape[1])], axis=1) / repeats[:, None]
                  for kind, v in shower_profiles(means, energies[owner], geometry, threshold=False).items()}  # fmt: skip
        ours = {kind: fit(v) for kind, v in engine.items()}
        worst = {
            kind: float(np.max(np.abs(judged_ratios(ours[kind], targets[kind], JUDGED_SHARE)[1] - 1))) for kind in ours
        }
        history.append(worst)
        print(f"iteration {iteration}: largest differences in the bins with >= 1% of the energy {worst}", flush=True)
        # the offsets enter additively: fitted in one go to Geant4 minus the engine without them (iterating on
        # the difference of the two fits instead would drift back to the unpenalised, zigzagging solution);
        # iterations only follow the clipping at zero and the radial factors' effect on the read-out's edge
        offsets = fit(geant4["longitudinal"] - (engine["longitudinal"] - fit.weights @ offsets))
        for k in range(len(knots)):
            target, mine = targets["radial"][k], ours["radial"][k]
            fitted = (target >= MIN_SHARE * target.sum()) & (mine > 0)
            step = np.zeros_like(target)
            step[fitted] = np.log(target[fitted] / mine[fitted])
            log_radial[k] = fill_unfitted(log_radial[k] + step, fitted)
    # the last update is not yet judged: keep the tables of the last judged iteration
    names = ", ".join(p.name for p in args.geant4)
    tables = dataclasses.replace(tables, source=f"Geant4 ({names}), benchmarks/fit_profile_tables.py")
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.write_text(tables.to_json() + "\n")
    tmp.replace(args.out)
    data = {"geometry": args.geometry, "geant4_files": {str(p): len(e) for p, e in zip(args.geant4, g4_energies, strict=True)},
            "energies_gev": [float(k / 1e3) for k in knots], "iterations": history, "out": str(args.out)}  # fmt: skip
    command = (f"python benchmarks/fit_profile_tables.py --geometry {args.geometry} --geant4 "
               f"{' '.join(map(str, args.geant4))} --per-decade {args.per_decade} --iterations {args.iterations} --smoothing {args.smoothing}")  # fmt: skip
    print("wrote", args.out, "and", write_result(f"profile_tables_{args.geometry}", data, command))


if __name__ == "__main__":
    main()
