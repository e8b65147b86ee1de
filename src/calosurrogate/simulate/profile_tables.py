"""Residual corrections of the mean shower profiles, tabulated in incident energy.

GFlash's gamma-function longitudinal profile and two-component radial profile cannot follow a
sampling calorimeter's full simulation everywhere at once (the gamma profile's tail, the
entry region, the radial core at high energy). What the fitted coefficients leave over is
tabulated at a few incident energies, as FastCaloSim-style parametrisations do with histograms
per layer and energy: an energy added to (or taken from) each read-out layer, the same for every
shower of an energy, and a factor on the radial energy density in each radial interval. They are
fitted to full simulation of the same detector (``benchmarks/fit_profile_tables.py``). The layer
correction is additive because a factor would scale each shower's fluctuations with its mean: in
the deep layers, where GFlash's tail is far too short, that made the energy resolution at 100 GeV
a third worse.

Between the tabulated energies the offsets and the factors' logarithms are interpolated linearly
in ``ln E``; outside them the nearest energy's values hold.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ProfileTables:
    """Corrections of a shower's mean layer energies and radial profile, by incident energy.

    Attributes:
        energies_mev: The tabulated incident energies (MeV), increasing, shape ``(K,)``.
        layer_offsets: Energy added to each read-out layer, as a fraction of the incident
            energy, shape ``(K, n_layers)`` (a layer's energy is kept non-negative).
        radial_edges_mm: Radii (mm from the shower axis) bounding the radial intervals,
            increasing from 0, shape ``(R + 1,)``; beyond the last edge the factor is 1.
        radial_factors: Factor on the radial energy density in each interval, shape ``(K, R)``;
            each layer's radial profile is renormalised afterwards, so these move energy
            between radii and the layer offsets alone change the layer energies.
        source: What the factors were fitted to (for the record).
    """

    energies_mev: tuple[float, ...]
    layer_offsets: tuple[tuple[float, ...], ...]
    radial_edges_mm: tuple[float, ...]
    radial_factors: tuple[tuple[float, ...], ...]
    source: str = ""

    def __post_init__(self) -> None:
        k = len(self.energies_mev)
        if k < 1 or np.any(np.diff(self.energies_mev) <= 0):
            raise ValueError("profile tables: energies_mev must be increasing and not empty")
        if np.shape(self.layer_offsets)[0] != k or np.shape(self.radial_factors)[0] != k:
            raise ValueError(f"profile tables: {k} energies but factor tables of another length")
        if np.shape(self.radial_factors)[1] != len(self.radial_edges_mm) - 1 or self.radial_edges_mm[0] != 0:
            raise ValueError("profile tables: radial_edges_mm must start at 0 and bound every radial factor")
        if np.min(self.radial_factors) <= 0:
            raise ValueError("profile tables: radial factors must be positive")

    @property
    def n_layers(self) -> int:
        return np.shape(self.layer_offsets)[1]

    def _at(self, table: np.ndarray, energy_mev: np.ndarray) -> np.ndarray:
        x = np.log(np.asarray(energy_mev, dtype=float).reshape(-1))
        knots = np.log(np.asarray(self.energies_mev, dtype=float))
        return np.stack([np.interp(x, knots, table[:, j]) for j in range(table.shape[1])], axis=1)

    def layer_offsets_at(self, energy_mev: np.ndarray) -> np.ndarray:
        """Layer offsets (fractions of the incident energy) for incident energies (MeV, shape
        ``(B,)``): shape ``(B, n_layers)``."""
        return self._at(np.asarray(self.layer_offsets, dtype=float), energy_mev)

    def radial_factors_at(self, energy_mev: np.ndarray) -> np.ndarray:
        """Radial-interval factors for incident energies (MeV, shape ``(B,)``): shape ``(B, R)``."""
        return np.exp(self._at(np.log(np.asarray(self.radial_factors, dtype=float)), energy_mev))

    def corrected_rings(self, cdf, ring_edges_mm: np.ndarray, factors: np.ndarray) -> np.ndarray:
        """Fractions of a layer's energy in each ring, with the radial factors applied.

        Args:
            cdf: ``cdf(r_mm)`` -> fraction of the layer's energy within radius ``r_mm`` (mm), for
                ``r_mm`` of shape ``(1, n)``, returning ``(B, n)``.
            ring_edges_mm: The read-out rings' edges (mm), shape ``(n_r + 1,)``.
            factors: ``radial_factors_at`` for the showers, shape ``(B, R)``.

        Returns:
            Ring fractions, shape ``(B, n_r)``, renormalised so that the whole profile (out to
            infinity) still integrates to 1.
        """
        edges = np.asarray(self.radial_edges_mm, dtype=float)
        lo, hi = edges[:-1], edges[1:]
        # every ring edge clipped into every interval: the energy of ring j inside interval k
        points = np.clip(np.asarray(ring_edges_mm, dtype=float)[:, None], lo[None, :], hi[None, :])
        inside = cdf(points.reshape(1, -1)).reshape(len(factors), *points.shape)
        rings = (np.diff(inside, axis=1) * factors[:, None, :]).sum(axis=2)
        beyond = np.clip(np.asarray(ring_edges_mm, dtype=float), edges[-1], None)
        rings += np.diff(cdf(beyond[None, :]), axis=1)
        bounds = cdf(edges[None, :])
        total = (np.diff(bounds, axis=1) * factors).sum(axis=1) + 1.0 - bounds[:, -1]
        return rings / total[:, None]

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "energies_mev": list(self.energies_mev),
                "radial_edges_mm": list(self.radial_edges_mm),
                "layer_offsets": [[round(v, 7) for v in row] for row in self.layer_offsets],
                "radial_factors": [[round(v, 5) for v in row] for row in self.radial_factors],
            },
            indent=1,
        )

    @classmethod
    def from_arrays(cls, energies_mev, layer_offsets, radial_edges_mm, radial_factors, source: str = ""):
        def rows(a):
            return tuple(tuple(float(v) for v in row) for row in np.asarray(a, dtype=float))

        return cls(tuple(float(e) for e in energies_mev), rows(layer_offsets),
                   tuple(float(r) for r in radial_edges_mm), rows(radial_factors), source)  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProfileTables:
        """Read tables written by ``to_json``; a bad file is named with what is wrong."""
        try:
            d = json.loads(Path(path).read_text())
            return cls.from_arrays(d["energies_mev"], d["layer_offsets"], d["radial_edges_mm"], d["radial_factors"],
                                   d.get("source", ""))  # fmt: skip
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a profile-tables file ({error})") from error


TABLES_DIR = Path(__file__).with_name("tables")


def shipped_tables(name: str) -> ProfileTables:
    """The tables the package ships for a detector (``simulate/tables/NAME.json``)."""
    return ProfileTables.load(TABLES_DIR / f"{name}.json")
