"""A parametrized electromagnetic shower simulator in the style of GFlash.

This is a parametrized simulation standing in for Geant4, not Geant4: it gives a surrogate
realistic structure to learn (energy-dependent longitudinal and radial profiles with
correlated fluctuations, sampling fluctuations, sparsity, readout threshold) on a machine
with no access to the CaloChallenge files.

Per shower (hep-ex/0001020 for the parametrization):

1. Draw the gamma-profile parameters ``(T, alpha)`` with their correlated fluctuations;
   photons first convert after an exponential depth of mean 9/7 X0.
2. Integrate the profile over each layer's depth: the mean layer energies.
3. Spread each layer's energy radially with the two-component GFlash profile (in Moliere
   radii, scaled by a per-shower log-normal factor) and evenly in alpha: mean voxel energies.
4. Deposit energy spots: a Poisson number per voxel of gamma-distributed energy. This is the
   sampling fluctuation (stochastic term ``sqrt(spot (1 + 1/k) / E)``) and the source of
   sparsity.
5. Zero voxels below the readout threshold.

Showers are made in fixed blocks, each with its own seed derived from the run seed and the
block number, so a run is reproducible for a seed whatever the output chunking.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data.hdf5 import ShowerWriter
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.simulate.detectors import DetectorDescription
from calosurrogate.simulate.gflash import (
    longitudinal_fractions,
    longitudinal_parameters,
    median_longitudinal_parameters,
    radial_cdf,
    radial_parameters,
)

PHOTON_CONVERSION_X0 = 9.0 / 7.0
CONTAINMENT_GRID_MEV = (10.0, 1e8)  # incident energies of the median showers' containment table
BLOCK_SIZE = 256


class ShowerSimulator:
    """Makes showers for one detector.

    Args:
        detector: The detector description.
    """

    def __init__(self, detector: DetectorDescription) -> None:
        self.detector = detector
        geometry = detector.geometry
        rm = detector.stack.material.moliere_radius_mm
        self._edges_rm = [np.asarray(layer.r_edges) / rm for layer in geometry.layers]
        self._containment_grid: tuple[np.ndarray, np.ndarray] | None = None

    def mean_showers(self, incident_energies: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Expected voxel energies of individual showers, before spots and threshold.

        Each shower's profile fluctuates in depth, length and width; with the detector's
        ``hold_containment`` the share of its energy that lands inside the binning is held at the
        median shower's of its energy (:meth:`_median_containment`).

        Args:
            incident_energies: MeV, shape ``(B,)``.
            rng: Source of the shower-to-shower profile fluctuations.

        Returns:
            ``(mean_voxels (B, n_voxels) MeV, layer_means (B, n_layers) MeV)``.
        """
        det = self.detector
        mat = det.stack.material
        energy = np.asarray(incident_energies, dtype=float)
        t_max, alpha = longitudinal_parameters(energy / 1e3, mat.z_eff, mat.critical_energy_mev, rng, det.coefficients)
        if det.particle == "photon":
            start = rng.exponential(PHOTON_CONVERSION_X0, len(energy))
        else:
            start = np.zeros(len(energy))
        scale = np.exp(det.lateral_spread * rng.standard_normal(len(energy)))
        mean_voxels, layer_means = self._profile(energy, t_max, alpha, start, scale)
        if det.hold_containment:
            # Geant4's showers keep nearly all of their energy inside the binning whatever their shape
            # (its constant term is 0.1%); GFlash's radii grow fast with depth, so that a long or wide
            # shower lost more outside the last radial bin (a constant term of 0.5% at 1 TeV, the
            # resolution there 1.5 times Geant4's): the fluctuations move energy, they do not lose it.
            keep = self._median_containment(energy) / np.maximum(_held_share(mean_voxels, layer_means), 1e-12)
            mean_voxels *= keep[:, None]
            layer_means *= keep[:, None]
        coefficients = det.coefficients
        if coefficients.entry_deposit_mev and det.particle == "electron":
            # the shower's start in the first layer, beyond the gamma profile, in its innermost ring
            entry = coefficients.entry_deposit_mev * (energy / 1e3) ** coefficients.entry_power
            n_alpha = det.geometry.layers[0].n_alpha
            ring = det.geometry.voxel_index(0, np.arange(n_alpha), 0)
            mean_voxels[:, ring] += entry[:, None] / n_alpha
            layer_means[:, 0] += entry
        return mean_voxels, layer_means

    def _profile(
        self, energy: np.ndarray, t_max: np.ndarray, alpha: np.ndarray, start: np.ndarray, scale: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Voxel and layer energies (MeV) of showers with the given profile parameters (depth of
        maximum and shape in X0, conversion depth in X0, factor on the radii)."""
        det = self.detector
        stack = det.stack
        energy_gev = energy / 1e3
        fractions = longitudinal_fractions(
            t_max, alpha, stack.starts[None] - start[:, None], stack.ends[None] - start[:, None]
        )
        layer_means = energy[:, None] * fractions * det.nominal_response
        tables = det.profile_tables
        if tables is not None:
            layer_means = np.clip(layer_means + energy[:, None] * tables.layer_offsets_at(energy), 0.0, None)
            radial_factors = tables.radial_factors_at(energy)
        tau = np.clip(stack.centres[None] - start[:, None], 0.0, None) / t_max[:, None]
        r_core, r_tail, p = radial_parameters(tau, energy_gev[:, None], stack.material.z_eff, det.coefficients)
        r_core, r_tail = r_core * scale[:, None], r_tail * scale[:, None]
        mean_voxels = np.empty((len(energy), det.geometry.n_voxels))
        rm = stack.material.moliere_radius_mm
        for i, layer in enumerate(det.geometry.layers):
            if tables is None:
                cdf = radial_cdf(self._edges_rm[i][None, :], r_core[:, i, None], r_tail[:, i, None], p[:, i, None])
                rings = np.diff(cdf, axis=1)
            else:

                def cdf_mm(r_mm, i=i):
                    return radial_cdf(r_mm / rm, r_core[:, i, None], r_tail[:, i, None], p[:, i, None])

                rings = tables.corrected_rings(cdf_mm, np.asarray(layer.r_edges), radial_factors)
            ring = rings * (layer_means[:, i, None] / layer.n_alpha)
            block = np.broadcast_to(ring[:, None, :], (len(energy), layer.n_alpha, layer.n_r))
            mean_voxels[:, det.geometry.layer_slice(i)] = block.reshape(len(energy), -1)
        return mean_voxels, layer_means

    def _median_containment(self, energy: np.ndarray) -> np.ndarray:
        """Share of the layer energy the radial bins hold for the median shower (every fluctuation
        at its median) of each energy (MeV), interpolated in ln E on a grid made once."""
        if self._containment_grid is None:
            det = self.detector
            mat = det.stack.material
            grid = np.geomspace(*CONTAINMENT_GRID_MEV, 61)
            t_max, alpha = median_longitudinal_parameters(
                grid / 1e3, mat.z_eff, mat.critical_energy_mev, det.coefficients
            )
            start = np.full(len(grid), PHOTON_CONVERSION_X0 * np.log(2) if det.particle == "photon" else 0.0)
            held = _held_share(*self._profile(grid, t_max, alpha, start, np.ones(len(grid))))
            self._containment_grid = (np.log(grid), held)
        ln_grid, held = self._containment_grid
        return np.interp(np.log(energy), ln_grid, held)

    def simulate(self, incident_energies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Showers for the given incident energies (MeV, shape ``(B,)``): voxels in MeV, ``(B, n_voxels)``."""
        det = self.detector
        mean_voxels, _ = self.mean_showers(incident_energies, rng)
        n_spots = rng.poisson(mean_voxels / det.spot_energy_mev)
        showers = rng.gamma(n_spots * det.spot_shape, det.spot_energy_mev / det.spot_shape)
        showers[showers < det.readout_threshold_mev] = 0.0
        return showers

    def blocks(
        self, n: int, spectrum: EnergySpectrum, seed: int, block_size: int = BLOCK_SIZE, first_block: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(incident_energies (b,), showers (b, n_voxels))`` blocks until ``n`` showers are made.

        Block ``k`` draws from ``(seed, k)`` alone; ``first_block`` starts the count further on (a
        shard of a larger run then holds exactly that run's showers).
        """
        for index, lo in enumerate(range(0, n, block_size), start=first_block):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            size = min(block_size, n - lo)
            energies = spectrum.sample(size, rng)
            yield energies, self.simulate(energies, rng)

    def sample(self, n: int, spectrum: EnergySpectrum | str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` showers in memory: ``(incident_energies (n, 1), showers (n, n_voxels))`` in MeV."""
        spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
        parts = list(self.blocks(n, spectrum, seed))
        return np.concatenate([p[0] for p in parts])[:, None], np.concatenate([p[1] for p in parts])


def _held_share(mean_voxels: np.ndarray, layer_means: np.ndarray) -> np.ndarray:
    """Share of each shower's layer energy that its voxels hold ``(B,)``."""
    return mean_voxels.sum(1) / np.maximum(layer_means.sum(1), 1e-12)


def simulate_to_file(
    detector: DetectorDescription,
    n: int,
    out: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    dtype: str = "float32",
    force: bool = False,
    progress: bool = True,
    rows: tuple[int, int] | None = None,
) -> Path:
    """Simulate ``n`` showers into a CaloChallenge HDF5 file, block by block (bounded memory).

    The file appears only when complete; an existing file is kept unless ``force``.

    Args:
        rows: Only the showers ``[lo, hi)`` of the ``n``-shower run (``lo`` a multiple of
            :data:`BLOCK_SIZE`, ``hi`` too or ``n``): a shard, equal to those rows of the whole file.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    lo, hi = rows or (0, n)
    if not 0 <= lo < hi <= n or lo % BLOCK_SIZE or (hi % BLOCK_SIZE and hi != n):
        raise ValueError(f"rows {lo}:{hi} of {n}: a shard starts at a multiple of {BLOCK_SIZE} showers and ends at one "
                         "or at the end")  # fmt: skip
    spectrum = spectrum or detector.default_spectrum
    spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
    usual = EnergySpectrum.parse(detector.default_spectrum).bounds
    low, high = spectrum.bounds
    if low < usual[0] or high > usual[1]:
        warnings.warn(
            f"{spectrum.spec} reaches outside {detector.name}'s range {usual[0]:.6g}-{usual[1]:.6g} MeV, where "
            "the parametrisation was not checked: showers there are an extrapolation",
            stacklevel=2,
        )
    simulator = ShowerSimulator(detector)
    attrs = {
        "generator": "calosurrogate parametrized shower simulator (GFlash-style; not Geant4)",
        "detector": detector.name,
        "energy_spectrum": spectrum.spec,
        "seed": seed,
        "spot_energy_mev": detector.spot_energy_mev,
    }
    with ShowerWriter(
        out, detector.geometry.n_voxels, dtype=dtype, force=force, attrs=attrs, pairing_index=True, first_index=lo
    ) as writer:
        bar = tqdm(total=hi - lo, desc=f"simulate {detector.name}", unit="shower", disable=not progress)
        for energies, showers in simulator.blocks(hi - lo, spectrum, seed, first_block=lo // BLOCK_SIZE):
            writer.write(energies, showers)
            bar.update(len(energies))
        bar.close()
    return Path(out)
