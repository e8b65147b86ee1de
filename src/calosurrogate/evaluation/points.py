"""Judging point-cloud showers: CaloClouds' observables on the projected cells, beside their floor.

The reference is split in two halves by alternate showers, A and B. Generated showers are
expected row by row at the reference's conditions (``calo sample --energies REFERENCE``), so the
generated showers of B's rows share B's conditions: the Jensen-Shannon distance of an observable
is that of A against generated-at-B, and its *floor* that of A against B itself, the same
numbers of showers on the same bins (the distance's finite-sample bias is then the same in both).

The shower's internal direction (energy-weighted PCA of all hits, and of the most energetic
few percent) gives an angular error per shower; the distributions of those errors are compared
by their separation power, with the same floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calosurrogate.data.points import CellHits, PointCloudFile, PointClouds, project
from calosurrogate.geometry.planar import PlanarCalorimeter
from calosurrogate.metrics.point_clouds import (
    OBSERVABLES,
    angular_errors,
    jensen_shannon_from_counts,
    observable_bins,
    observable_counts,
    observables,
    principal_axes,
)
from calosurrogate.metrics.separation import HistogramPair, separation_power

TOP_FRACTION = 0.05  # the "most energetic few percent" of hits for the core's direction
LABELS = {
    "cell_energy": "cell energy [MeV] (above half a MIP)",
    "layer_energy": "layer (energy-weighted)",
    "radial_energy": "distance to the axis [mm] (energy-weighted)",
    "occupancy": "hits per shower",
    "layer_occupancy": "layer (hits)",
    "radial_occupancy": "distance to the axis [mm] (hits)",
    "energy_sum": "visible energy [MeV]",
    "cog_x": "centre of gravity x [mm]",
    "cog_y": "centre of gravity y [mm]",
    "cog_z": "centre of gravity z [layer]",
}


@dataclass
class PointEvaluation:
    """What :func:`evaluate_point_clouds` found.

    Attributes:
        jsd: Per observable: ``value``, ``error``, ``floor``, ``floor_error``.
        angles: Per PCA variant (``all``, ``top``): separation power of the angular-error
            distributions (``value``, ``error``, ``floor``) and their medians in degrees.
        pairs: Reference half A against generated-at-B, per observable (for figures).
        settings: Sizes, cell pitch, cut.
    """

    jsd: dict[str, dict[str, float]]
    angles: dict[str, dict[str, float]]
    pairs: list[HistogramPair] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def worst(self) -> tuple[str, float]:
        """The observable with the largest distance, and that distance."""
        name = max(self.jsd, key=lambda k: self.jsd[k]["value"])
        return name, self.jsd[name]["value"]

    def to_dict(self) -> dict[str, object]:
        return {"jsd": self.jsd, "angles": self.angles, "settings": self.settings}


def _hits(clouds: PointClouds, geometry: PlanarCalorimeter, cell_mm: float | None) -> CellHits:
    return project(clouds, geometry, cell_mm).above(geometry.mip_mev / 2)


def evaluate_point_clouds(reference: PointClouds, generated: PointClouds, geometry: PlanarCalorimeter,
                          cell_mm: float | None = None, seed: int = 0) -> PointEvaluation:  # fmt: skip
    """Every observable's Jensen-Shannon distance and the PCA angles, beside their floors (module docstring)."""
    n = min(len(reference), len(generated))
    if n < 4:
        raise ValueError(f"{n} shower pair(s): the evaluation needs at least 4")
    a, b = np.arange(0, n, 2), np.arange(1, n, 2)
    half_a, half_b, gen_b = reference.select(a), reference.select(b), generated.select(b)
    hits = {name: _hits(c, geometry, cell_mm) for name, c in (("a", half_a), ("b", half_b), ("gen", gen_b))}
    obs = {name: observables(h) for name, h in hits.items()}
    jsd, pairs = {}, []
    for name in OBSERVABLES:
        bins = observable_bins(name, obs["a"][name], geometry.n_layers, geometry.mip_mev)
        (ref, ref_w2, ref_out), (gen, gen_w2, gen_out), (other, other_w2, _) = (
            observable_counts(obs[k][name], bins) for k in ("a", "gen", "b"))  # fmt: skip
        value = jensen_shannon_from_counts(ref, gen, f"jsd/{name}", seed, ref_w2, gen_w2)
        floor = jensen_shannon_from_counts(ref, other, f"jsd/{name}", seed, ref_w2, other_w2)
        jsd[name] = {"value": value.value, "error": value.error, "floor": floor.value, "floor_error": floor.error}
        pairs.append(HistogramPair(name, LABELS[name], bins, ref, gen, ref_out, gen_out, log_x=name == "cell_energy",
                                   reference_sumw2=ref_w2, generated_sumw2=gen_w2))  # fmt: skip
    angles = {}
    for variant, top in (("all", None), ("top", TOP_FRACTION)):
        errors = {name: np.degrees(angular_errors(principal_axes(hits[name], geometry, c.directions, c.entry_points,
                                                                 top), c.directions))
                  for name, c in (("a", half_a), ("b", half_b), ("gen", gen_b))}  # fmt: skip
        finite = np.concatenate([e[np.isfinite(e)] for e in errors.values()])
        bins = np.linspace(0.0, max(float(np.quantile(finite, 0.99)), 1e-3), 31)
        value = separation_power(errors["a"], errors["gen"], bins, seed)
        floor = separation_power(errors["a"], errors["b"], bins, seed)
        angles[variant] = {"value": value.value, "error": value.error, "floor": floor.value,
                           "median_reference_deg": float(np.nanmedian(errors["a"])),
                           "median_generated_deg": float(np.nanmedian(errors["gen"]))}  # fmt: skip
    settings = {"n_pairs": n, "n_each": len(b), "cell_mm": float(cell_mm or geometry.cell_mm),
                "cut_mev": geometry.mip_mev / 2, "geometry": geometry.name, "top_fraction": TOP_FRACTION}  # fmt: skip
    return PointEvaluation(jsd, angles, pairs, settings)


def evaluate_point_cloud_files(reference: str, generated: str, cell_mm: float | None = None,
                               max_showers: int | None = None, seed: int = 0) -> PointEvaluation:  # fmt: skip
    """:func:`evaluate_point_clouds` of two point-cloud files of the same calorimeter."""
    with PointCloudFile(reference) as ref, PointCloudFile(generated) as gen:
        if ref.geometry.name != gen.geometry.name:
            raise ValueError(f"{generated}: showers of {gen.geometry.name}, the reference's are of {ref.geometry.name}")
        n = min(ref.n_showers, gen.n_showers, max_showers or 10**12)
        return evaluate_point_clouds(ref.read(0, n), gen.read(0, n), ref.geometry, cell_mm, seed)
