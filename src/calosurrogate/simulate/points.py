"""The fast engine for highly granular planar calorimeters: angled photon showers as point clouds.

Per photon (energy ``E``, direction ``d`` at angle ``theta`` to the layer normal, entry point
``(x_0, y_0)``), with the GFlash parametrisation (hep-ex/0001020) of the stack's thin-layer
mixture:

1. The photon converts after an exponential depth of mean 9/7 X0 along its line; the gamma
   profile ``(T, alpha)`` is drawn with its correlated fluctuations.
2. Along its line the photon crosses ``1 / cos(theta)`` times the radiation lengths of normal
   incidence: each layer's share of the energy is the profile integrated over its absorber and
   sensor along the line, and its sensor sees the layer's sampling fraction of it.
3. That energy is carried by spots of about one MIP each (a Poisson number of gamma-distributed
   energies): the charged tracks that cross the sensor.
4. Each spot lies off the shower axis by a radius drawn from GFlash's two-component radial profile
   (per shower a log-normal scale) and an angle uniform around the axis, in the plane
   perpendicular to ``d``; projected along ``d`` onto the sensor, the offset stretches by
   ``1 / cos(theta)`` in the direction of the tilt.
5. Spots are binned in the detector's sub-cells; each sub-cell with energy is one point, stored
   in the local frame of :class:`~calosurrogate.geometry.planar.PlanarCalorimeter` (its centre
   minus the layer's shift).

Showers are made in blocks of :data:`BLOCK_SIZE`, block ``k`` from ``(seed, k)`` alone.
Energies in MeV, lengths in mm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data.points import PointClouds, PointCloudWriter, sum_in_cells
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.geometry.planar import PlanarCalorimeter, direction_from_angles
from calosurrogate.simulate.gflash import longitudinal_fractions, longitudinal_parameters, radial_parameters

PHOTON_CONVERSION_X0 = 9.0 / 7.0
BLOCK_SIZE = 64
DEFAULT_SPECTRUM = "uniform:10GeV:90GeV"


class PointShowerSimulator:
    """Photon showers in a planar calorimeter, as points.

    Args:
        geometry: The calorimeter.
        electron_to_mip: Sampling fraction of electromagnetic showers relative to a MIP's
            (below 1 in tungsten: the soft electrons stop in the absorber).
        spot_mips: Mean energy of a spot in MIPs (one track crossing a sensor).
        spot_shape: Gamma shape of a spot's energy (its Landau-like spread).
        lateral_spread: Shower-to-shower log-normal spread of the radial scale.
    """

    def __init__(self, geometry: PlanarCalorimeter, electron_to_mip: float = 0.75, spot_mips: float = 1.2,
                 spot_shape: float = 3.0, lateral_spread: float = 0.08) -> None:  # fmt: skip
        self.geometry = geometry
        self.electron_to_mip = electron_to_mip
        self.spot_mev = spot_mips * geometry.mip_mev
        self.spot_shape = spot_shape
        self.lateral_spread = lateral_spread

    def conditions(self, n: int, spectrum: EnergySpectrum, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Draw ``(incident_energies (n,) MeV, directions (n, 3), entry_points (n, 2) mm)``: angles
        uniform over the acceptance, the entry point uniform over one cell (the grid is regular,
        so every cell is alike)."""
        geo = self.geometry
        energies = spectrum.sample(n, rng)
        theta = rng.uniform(-geo.max_angle, geo.max_angle, size=(n, 2))
        entry = rng.uniform(-geo.cell_mm / 2, geo.cell_mm / 2, size=(n, 2))
        return energies, direction_from_angles(theta[:, 0], theta[:, 1]), entry

    def layer_energies(self, incident_energies: np.ndarray, directions: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Visible energy per layer (MeV, ``(B, L)``) before sampling fluctuations, and the
        shower's ``tau = t / T`` at each sensor and ``T`` (the radial profile's inputs)."""
        geo = self.geometry
        mat = geo.material
        energy_gev = np.asarray(incident_energies, dtype=float) / 1e3
        t_max, alpha = longitudinal_parameters(energy_gev, mat.z_eff, mat.critical_energy_mev, rng)
        start = rng.exponential(PHOTON_CONVERSION_X0, len(energy_gev))[:, None]
        path = 1.0 / directions[:, 2:3]
        ends = geo.layer_x0[None, :] * path - start
        starts = np.concatenate([np.zeros((len(ends), 1)), geo.layer_x0[None, :-1] * path], axis=1) - start
        fractions = longitudinal_fractions(t_max, alpha, starts, ends)
        visible = fractions * (energy_gev[:, None] * 1e3) * geo.sampling_fractions[None] * self.electron_to_mip
        tau = np.clip(ends, 0.0, None) / t_max[:, None]
        return visible, tau, energy_gev

    def simulate(self, incident_energies: np.ndarray, directions: np.ndarray, entry_points: np.ndarray,
                 rng: np.random.Generator) -> PointClouds:  # fmt: skip
        """Showers for the given conditions."""
        geo = self.geometry
        n, n_layers = len(incident_energies), geo.n_layers
        visible, tau, energy_gev = self.layer_energies(incident_energies, directions, rng)
        r_core, r_tail, p = radial_parameters(tau, energy_gev[:, None], geo.material.z_eff)
        scale = np.exp(self.lateral_spread * rng.standard_normal(n))[:, None] * geo.material.moliere_radius_mm
        n_spots = rng.poisson(visible / self.spot_mev)  # (B, L)
        flat = n_spots.ravel()
        total = int(flat.sum())
        cell = np.repeat(np.arange(n * n_layers), flat)
        shower, layer = np.divmod(cell, n_layers)
        energy = rng.gamma(self.spot_shape, self.spot_mev / self.spot_shape, size=total)
        core = rng.random(total) < p.ravel()[cell]
        radius_scale = np.where(core, r_core.ravel()[cell], r_tail.ravel()[cell]) * scale[shower, 0]
        u = rng.uniform(0.0, 0.995, size=total)  # the profile's far tail (beyond ~14 R) left out
        radius = radius_scale * np.sqrt(u / (1.0 - u))
        phi = rng.uniform(0.0, 2 * np.pi, size=total)
        along, across = radius * np.cos(phi), radius * np.sin(phi)
        # in the sensor plane: stretched by 1/cos(theta) along the tilt's direction
        d = directions[shower]
        tilt = np.hypot(d[:, 0], d[:, 1])
        unit = np.where(tilt[:, None] > 1e-12, d[:, :2] / np.maximum(tilt, 1e-12)[:, None], [1.0, 0.0])
        along = along / d[:, 2]
        local = along[:, None] * unit + across[:, None] * np.stack([-unit[:, 1], unit[:, 0]], -1)
        all_shifts = geo.shifts(directions, entry_points)
        position = local + all_shifts[shower, layer]
        inside = geo.contains(position)  # what leaves the segment is lost to it
        # one point per (shower, layer, sub-cell) with energy: the sub-cell's centre
        cells = sum_in_cells(
            shower[inside], layer[inside], position[inside], energy[inside], all_shifts, geo.sub_cell_mm
        )
        points = np.column_stack([cells.local_xy, cells.layer, cells.energy]).astype(np.float32)
        offsets = cells.offsets
        return PointClouds(np.asarray(incident_energies, np.float64), directions, entry_points, offsets, points)

    def blocks(self, n: int, spectrum: EnergySpectrum, seed: int, block_size: int = BLOCK_SIZE,
               first_block: int = 0) -> Iterator[PointClouds]:  # fmt: skip
        """Yield blocks of showers until ``n`` are made; block ``k`` draws from ``(seed, k)`` alone."""
        for index, lo in enumerate(range(0, n, block_size), start=first_block):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            yield self.simulate(*self.conditions(min(block_size, n - lo), spectrum, rng), rng)

    def sample(self, n: int, spectrum: EnergySpectrum | str = DEFAULT_SPECTRUM, seed: int = 0) -> PointClouds:
        """``n`` showers in memory."""
        spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
        return PointClouds.concatenate(list(self.blocks(n, spectrum, seed)))


def simulate_points_to_file(geometry: PlanarCalorimeter, n: int, out: str | os.PathLike[str],
                            spectrum: EnergySpectrum | str | None = None, seed: int = 0, force: bool = False,
                            progress: bool = True) -> Path:  # fmt: skip
    """Simulate ``n`` photon showers into a point-cloud file (:mod:`calosurrogate.data.points`),
    block by block; the file appears only when complete and an existing one is kept unless ``force``."""
    if n < 1:
        raise ValueError("n must be at least 1")
    spectrum = EnergySpectrum.parse(spectrum or DEFAULT_SPECTRUM) if not isinstance(spectrum, EnergySpectrum) \
        else spectrum  # fmt: skip
    simulator = PointShowerSimulator(geometry)
    attrs = {"generator": "calosurrogate fast engine (GFlash-style points; not Geant4)", "particle": "photon",
             "energy_spectrum": spectrum.spec, "seed": seed}  # fmt: skip
    with PointCloudWriter(out, geometry, force=force, attrs=attrs) as writer:
        bar = tqdm(total=n, desc=f"simulate {geometry.name}", unit="shower", disable=not progress)
        for block in simulator.blocks(n, spectrum, seed):
            writer.write(block)
            bar.update(len(block))
        bar.close()
    return Path(out)
