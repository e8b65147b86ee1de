"""How a sample fills the core of a regular (ds2 / ds3) shower: the diagnostic behind issue 5.

For one layer, per range of incident energy: the fraction of the layer's energy in the innermost
radial ring, the fraction of that ring's alpha bins that are empty (below the cut), the spread
of log10(alpha bin / ring mean) over hit bins, and the mean share of the ring's largest alpha
bin. The simulator's showers are symmetric in alpha, so a good sample shares the ring evenly.

With ``--radial``, also the layer's radial profile ring by ring: the mean fraction of the layer's
energy in the ring, hits per voxel, and the median log10(E / E_inc) of the ring's hits. A sample
can have the right number of hits and still put them two decades too low (faint hits the
classifier sees in the radial centre and width of the first layers).

Run: .venv/bin/python benchmarks/diagnose_core.py REFERENCE.h5 GENERATED.h5 [...] --geometry ds2 --layer 5 [--radial]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from calosurrogate.data import read_showers
from calosurrogate.simulate import get_detector

ENERGY_RANGES_MEV = {"E < 10 GeV": (0.0, 1e4), "E > 100 GeV": (1e5, np.inf)}


def core_statistics(path: str, geometry, layer: int, cut_mev: float, max_showers: int) -> dict[str, dict[str, float]]:
    batch = read_showers(path, max_showers=max_showers)
    showers = batch.showers.reshape(-1, *geometry.shape)[:, layer]  # (N, alpha, r)
    energies = batch.incident_energies.ravel()
    result = {}
    for name, (low, high) in ENERGY_RANGES_MEV.items():
        selected = showers[(energies >= low) & (energies < high)]
        ring = selected[:, :, 0]
        ring_total = ring.sum(1)
        hit = ring >= cut_mev
        ratio = ring / np.maximum(ring.mean(1, keepdims=True), 1e-12)
        result[name] = {
            "showers": len(selected),
            "ring0_fraction": float((ring_total / np.maximum(selected.sum((1, 2)), 1e-12)).mean()),
            "empty_alpha_bins": float(1 - hit.mean()),
            "log10_spread": float(np.log10(ratio[hit]).std()),
            "largest_alpha_share": float((ring.max(1) / np.maximum(ring_total, 1e-12)).mean()),
        }
    return result


def radial_profile(path: str, geometry, layer: int, cut_mev: float, max_showers: int) -> dict[str, list[float]]:
    """Per radial ring of one layer: energy fraction, hits per voxel, median log10(E / E_inc) of hits."""
    batch = read_showers(path, max_showers=max_showers)
    showers = batch.showers.reshape(-1, *geometry.shape)[:, layer]  # (N, alpha, r)
    fraction = showers / batch.incident_energies.reshape(-1, 1, 1)
    ring_energy = showers.sum(1)
    total = ring_energy.sum(1)
    hit = showers >= cut_mev
    medians = [float(np.median(np.log10(fraction[:, :, r][hit[:, :, r]]))) if hit[:, :, r].any() else float("nan")
               for r in range(showers.shape[2])]  # fmt: skip
    return {
        "energy_fraction": (ring_energy[total > 0] / total[total > 0, None]).mean(0).tolist(),
        "hits_per_voxel": hit.mean((0, 1)).tolist(),
        "median_log10_hit_fraction": medians,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="reference first, then generated files")
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--layer", type=int, default=5)
    parser.add_argument("--max-showers", type=int, default=5000)
    parser.add_argument("--radial", action="store_true", help="also print the layer's radial profile ring by ring")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--annotate", help="a benchmark result JSON: store the figures of the (one) generated file "
                        "and the reference in it, with a one-line note for BENCHMARKS.md")  # fmt: skip
    args = parser.parse_args()
    detector = get_detector(args.geometry)
    figures = {f: core_statistics(f, detector.geometry, args.layer, detector.readout_threshold_mev, args.max_showers)
               for f in args.files}  # fmt: skip
    print(f"layer {args.layer}: ring-0 fraction | empty alpha bins | log10 spread | largest alpha share")
    for path, by_range in figures.items():
        cells = [f"{name}: {s['ring0_fraction']:.2f} | {s['empty_alpha_bins']:.3f} | {s['log10_spread']:.2f} | "
                 f"{s['largest_alpha_share']:.2f}" for name, s in by_range.items()]  # fmt: skip
        print(path, "\n   ", "\n    ".join(cells))
    if args.radial:
        print(f"layer {args.layer} by radial ring: energy fraction / hits per voxel / median log10(E / E_inc) of hits")
        for path in args.files:
            profile = radial_profile(
                path, detector.geometry, args.layer, detector.readout_threshold_mev, args.max_showers
            )
            print(path)
            for name, values in profile.items():
                print(f"    {name:26s}", " ".join(f"{v:6.3f}" if name != "median_log10_hit_fraction" else f"{v:6.2f}"
                                                   for v in values))  # fmt: skip
    if args.annotate:
        if len(args.files) != 2:
            raise SystemExit("--annotate needs exactly two files: the reference and one generated file")
        reference, sample = (figures[f] for f in args.files)
        high, low = sample["E > 100 GeV"], sample["E < 10 GeV"]
        result = json.loads(Path(args.annotate).read_text())
        result.update({
            "core_layer": args.layer, "core_reference": reference, "core_sample": sample,
            "note": f"layer {args.layer}, E > 100 GeV: ring-0 fraction {high['ring0_fraction']:.2f}, log10 spread "
                    f"{high['log10_spread']:.2f}; E < 10 GeV: empty alpha bins {low['empty_alpha_bins']:.2f}",
        })  # fmt: skip
        Path(args.annotate).write_text(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"layer": args.layer, "files": figures}, out, indent=2)


if __name__ == "__main__":
    main()
