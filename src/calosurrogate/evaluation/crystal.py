"""Judging crystal-calorimeter showers with plate conditions, as ParaFlow does (issue 22).

Reference and generated files of the ParaFlow set-up (8 x 16 crystal windows with
``plate_thickness`` and ``plate_distance`` beside ``incident_energies``) are compared by their
shower shapes: the separation power of each shape inclusively and in slices of each condition,
each beside its floor (the same figure between two disjoint halves of the reference); the mean
of each shape over the grid of the two conditions, and its relative difference; and the average
image, with the relative difference of its central 4 x 4 crystals. The grid and the image have
their floors too (two halves of the reference): with a few thousand showers, a grid cell's mean
or a crystal's varies by several per cent between halves.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from calosurrogate.data.hdf5 import ShowerFile
from calosurrogate.geometry.crystal import PARAFLOW, CrystalGrid
from calosurrogate.metrics.crystal_shapes import (
    SLICE_EDGES,
    crystal_shower_shapes,
    mean_shape_grid,
    shape_bins,
    sliced_shape_separation,
)

CONDITIONS = ("plate_thickness", "plate_distance")


def _read(
    path: str | os.PathLike[str], grid: CrystalGrid, n_max: int | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with ShowerFile(path, conditions=CONDITIONS) as f:
        stop = min(f.n_showers, n_max) if n_max else f.n_showers
        batch = f.read(0, stop)
    if batch.showers.shape[1] != grid.n_voxels:
        raise ValueError(
            f"{path} [showers]: {batch.showers.shape[1]} crystals per shower, {grid.name} has {grid.n_voxels}"
        )
    conditions = {k: v.reshape(-1) for k, v in batch.conditions.items()}
    conditions["incident_energies"] = batch.incident_energies.reshape(-1)
    return grid.to_images(batch.showers.astype(np.float64)), conditions


def _floor(floor: dict, where: str, shape: str) -> float | None:
    value = floor.get(where, {}).get(shape)
    return None if value is None else value.value


def _central(image: np.ndarray, size: int = 4) -> np.ndarray:
    nx, ny = image.shape
    x0, y0 = (nx - size) // 2, (ny - size) // 2
    return image[x0 : x0 + size, y0 : y0 + size]


def evaluate_crystal_files(
    reference: str | os.PathLike[str], generated: str | os.PathLike[str], grid: CrystalGrid = PARAFLOW,
    n_max: int | None = None, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Every ParaFlow figure of ``generated`` against ``reference`` (JSON-ready)."""
    ref_images, ref_conditions = _read(reference, grid, n_max)
    gen_images, gen_conditions = _read(generated, grid, n_max)
    ref_shapes, gen_shapes = crystal_shower_shapes(ref_images), crystal_shower_shapes(gen_images)
    separation = sliced_shape_separation(ref_shapes, ref_conditions, gen_shapes, gen_conditions)
    # the floor: two disjoint halves of the reference, drawn at random
    half = np.random.default_rng(seed).permutation(len(ref_images)) < len(ref_images) // 2

    def part(d: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[mask] for k, v in d.items()}

    floor = sliced_shape_separation(part(ref_shapes, half), part(ref_conditions, half),
                                    part(ref_shapes, ~half), part(ref_conditions, ~half))  # fmt: skip
    grids = {"reference": mean_shape_grid(ref_shapes, ref_conditions),
             "generated": mean_shape_grid(gen_shapes, gen_conditions)}  # fmt: skip
    relative = {k: grids["generated"][k] / grids["reference"][k] - 1 for k in ref_shapes}
    halves = {"reference": mean_shape_grid(part(ref_shapes, half), part(ref_conditions, half)),
              "generated": mean_shape_grid(part(ref_shapes, ~half), part(ref_conditions, ~half))}  # fmt: skip
    histograms = {}
    for k in ref_shapes:
        bins = shape_bins(k, ref_shapes[k])
        counts = [np.histogram(v[np.isfinite(v)], bins=bins)[0] for v in (ref_shapes[k], gen_shapes[k])]
        outside = [int(np.sum((v < bins[0]) | (v > bins[-1]))) for v in (ref_shapes[k], gen_shapes[k])]
        histograms[k] = {"bins": bins.tolist(), "reference": counts[0].tolist(), "generated": counts[1].tolist(),
                         "reference_outside": outside[0], "generated_outside": outside[1]}  # fmt: skip
    mean_ref, mean_gen = ref_images.mean(0), gen_images.mean(0)
    central = _central(mean_gen) / _central(mean_ref) - 1
    central_floor = _central(ref_images[~half].mean(0)) / _central(ref_images[half].mean(0)) - 1
    return {
        "reference": str(reference), "generated": str(generated),
        "showers": {"reference": len(ref_images), "generated": len(gen_images)},
        "grid_edges": {k: list(v) for k, v in SLICE_EDGES.items()},
        "histograms": histograms,
        "separation": {s: {k: {"value": v.value, "error": v.error, "floor": _floor(floor, s, k)} for k, v in shapes.items()}
                       for s, shapes in separation.items()},
        "mean_shape_grid": {k: {"reference": grids["reference"][k].tolist(), "generated": grids["generated"][k].tolist(),
                                "relative_difference": relative[k].tolist(),
                                "largest_relative_difference": float(np.nanmax(np.abs(relative[k]))),
                                "floor": float(np.nanmax(np.abs(halves["generated"][k] / halves["reference"][k] - 1)))}
                            for k in ref_shapes},
        "average_image": {"reference": mean_ref.tolist(), "generated": mean_gen.tolist(),
                          "central_4x4_largest_relative_difference": float(np.max(np.abs(central))),
                          "central_4x4_floor": float(np.max(np.abs(central_floor)))},
    }  # fmt: skip
