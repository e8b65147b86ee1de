"""ParaFlow's detector in the fast engine: photons through an iron plate in a 4 T field onto PbWO4 crystals.

The set-up of ParaFlow (Erdmann et al.), whose surrogate learns how photon showers in a CMS-like
crystal calorimeter change with the material upstream of it: a 24 x 24 grid of PbWO4 crystals
(front face 22 x 22 mm^2, 230 mm long), photons of 20-100 GeV shot perpendicular to the front
face from 1.29 m away with the source position smeared by 44 mm, an iron plate (1 x 1 m^2) of
thickness d in [0.5, 1.5] X0 whose centre lies b in [50, 90] cm in front of the calorimeter, and
a 4 T field along x filling the volume. Per photon:

1. The photon converts in the plate with probability ``1 - exp(-7 d / 9)`` (d in X0), at an
   exponential depth; the pair shares the energy with the complete-screening Bethe-Heitler
   distribution ``1 - 4/3 x (1 - x)``.
2. Each charged particle radiates in the rest of the plate: it keeps the fraction ``y`` of its
   energy with ``-ln y`` gamma-distributed of shape ``t / ln 2`` (Bethe and Heitler's energy-loss
   distribution for thickness t in X0); the radiated photons go on along the original line.
3. Charged particles bend in the field on their flight to the calorimeter, on a circle of radius
   ``p / (0.3 B)`` (m, GeV, T): electrons to -y, positrons to +y; one that curls up before the
   calorimeter is lost. They enter inclined, and their shower axis keeps that inclination.
4. Each particle showers at its impact point with GFlash's homogeneous-medium parametrisation
   in PbWO4 (hep-ex/0001020, the published coefficients), as energy spots drawn from the
   longitudinal and radial profiles; spots beyond the crystals' length leak. Photostatistics
   smear each crystal by ``2.8% / sqrt(E / GeV)``.
5. The 24 x 24 image is cropped to the 8 x 16 window (x, y) with the largest energy sum: the
   field spreads showers along y.

Energies are in MeV, lengths in mm unless a name says otherwise; the plate thickness is in X0 of
iron and its distance in cm, as ParaFlow gives them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data.hdf5 import ShowerWriter
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.geometry.crystal import PARAFLOW, PARAFLOW_FULL, CrystalGrid
from calosurrogate.geometry.material import IRON, LEAD_TUNGSTATE, Material
from calosurrogate.simulate.gflash import longitudinal_parameters, radial_parameters

PLATE_THICKNESS = "plate_thickness"  # X0 of iron
PLATE_DISTANCE = "plate_distance"  # cm from the plate's centre to the calorimeter's front face
CONDITIONS = (PLATE_THICKNESS, PLATE_DISTANCE)
BLOCK_SIZE = 256


@dataclass(frozen=True)
class ParaFlowSetup:
    """ParaFlow's calorimeter, plate, field and beam, with the ranges the conditions are drawn from.

    Attributes:
        full_grid: The whole crystal grid (24 x 24).
        window: The stored window (8 x 16 crystals, x by y).
        crystal: Crystal material.
        plate: Plate material.
        crystal_length_mm: Crystal length (mm).
        field_tesla: Magnetic field along x (T).
        source_distance_mm: Distance of the photon source to the front face (mm).
        source_smear_mm: Standard deviation of the source position in x and in y (mm).
        default_spectrum: Incident photon energies when none is given (20-100 GeV, uniform).
        thickness_range_x0: Plate thickness d, uniform (X0 of iron).
        distance_range_cm: Distance b of the plate's centre to the front face, uniform (cm).
        held_out: Regions of the plate conditions no photon is drawn in (an interpolation test
            trains without them and is judged in them), each a tuple of bounds ``(condition, low,
            high)`` that all hold inside it (one bound: a band across the other condition; two: a
            rectangle); a draw in any region is drawn again, so the conditions are uniform over
            what is left.
        stochastic_term: Photostatistics, sigma / E = stochastic_term / sqrt(E / GeV) per crystal.
        spot_energy_mev: Energy of one shower spot (sets the spots' number: the lateral fluctuation).
        lateral_spread: Standard deviation of a shower's log-normal width scale.
    """

    full_grid: CrystalGrid = PARAFLOW_FULL
    window: CrystalGrid = PARAFLOW
    crystal: Material = LEAD_TUNGSTATE
    plate: Material = IRON
    crystal_length_mm: float = 230.0
    field_tesla: float = 4.0
    source_distance_mm: float = 1290.0
    source_smear_mm: float = 44.0
    default_spectrum: str = "uniform:20GeV:100GeV"
    thickness_range_x0: tuple[float, float] = (0.5, 1.5)
    distance_range_cm: tuple[float, float] = (50.0, 90.0)
    held_out: tuple[tuple[tuple[str, float, float], ...], ...] = ()
    stochastic_term: float = 0.028
    spot_energy_mev: float = 50.0
    lateral_spread: float = 0.08

    name = "paraflow"

    def __post_init__(self) -> None:
        for name, (low, high) in self.ranges.items():
            if not low <= high:
                raise ValueError(f"paraflow: the range of {name} is [{low}, {high}]; it needs low <= high")
        for region in self.held_out:
            for bound in region:
                if len(bound) != 3 or bound[0] not in CONDITIONS or not bound[1] < bound[2]:
                    raise ValueError(f"paraflow: held-out bound {bound!r} is not (one of {list(CONDITIONS)}, low, high) "
                                     "with low < high")  # fmt: skip
            if region and all(
                low <= self.ranges[name][0] and high >= self.ranges[name][1] for name, low, high in region
            ):
                raise ValueError(f"paraflow: held-out region {region!r} covers the whole range of the conditions")

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """Each plate condition's range (X0, cm)."""
        return {PLATE_THICKNESS: self.thickness_range_x0, PLATE_DISTANCE: self.distance_range_cm}

    def with_ranges(self, ranges: dict[str, tuple[float, float]]) -> ParaFlowSetup:
        """This set-up with some conditions drawn from other ranges (X0, cm)."""
        unknown = set(ranges) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"paraflow: no condition {sorted(unknown)}; its plate conditions are {list(CONDITIONS)}")
        merged = {**self.ranges, **{k: (float(v[0]), float(v[1])) for k, v in ranges.items()}}
        return dataclasses.replace(self, thickness_range_x0=merged[PLATE_THICKNESS],
                                   distance_range_cm=merged[PLATE_DISTANCE])  # fmt: skip

    def in_held_out(self, conditions: dict[str, np.ndarray]) -> np.ndarray:
        """Which photons lie in a held-out region (bounds closed at both ends)."""
        n = len(next(iter(conditions.values())))
        inside = np.zeros(n, dtype=bool)
        for region in self.held_out:
            here = np.ones(n, dtype=bool)
            for name, low, high in region:
                here &= (conditions[name] >= low) & (conditions[name] <= high)
            inside |= here
        return inside

    @property
    def geometry(self) -> CrystalGrid:
        """What a file stores: the window."""
        return self.window


def conversion_probability(thickness_x0: np.ndarray) -> np.ndarray:
    """Probability that a high-energy photon converts in ``thickness_x0`` radiation lengths."""
    return 1.0 - np.exp(-7.0 / 9.0 * np.asarray(thickness_x0))


def pair_energy_fraction(n: int, rng: np.random.Generator) -> np.ndarray:
    """The electron's share x of the photon's energy, density proportional to 1 - 4/3 x (1 - x)
    (Bethe-Heitler, complete screening); the positron takes 1 - x."""
    out = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        x = rng.random(len(todo))
        keep = rng.random(len(todo)) <= 1.0 - 4.0 / 3.0 * x * (1.0 - x)  # the density's maximum is 1
        out[todo[keep]] = x[keep]
        todo = todo[~keep]
    return out


def bremsstrahlung_retained(thickness_x0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fraction of its energy an electron keeps after ``thickness_x0`` X0: ``exp(-G)``, G gamma of
    shape ``t / ln 2`` (Bethe and Heitler's energy-loss distribution)."""
    shape = np.asarray(thickness_x0, dtype=float) / np.log(2.0)
    loss = np.where(shape > 0, rng.gamma(np.maximum(shape, 1e-12)), 0.0)
    return np.exp(-loss)


def bending(momentum_gev: np.ndarray, field_tesla: float, flight_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sideways displacement (mm) and angle (rad) after flying ``flight_mm`` along the original line
    through a transverse field, on the circle of radius ``p / (0.3 B)``; NaN where the particle
    curls up before getting there."""
    radius_mm = 1e3 * np.asarray(momentum_gev, dtype=float) / (0.3 * field_tesla)
    flight = np.asarray(flight_mm, dtype=float)
    sine = flight / radius_mm
    reach = sine < 1.0
    sine = np.where(reach, sine, np.nan)
    displacement = radius_mm * (1.0 - np.sqrt(1.0 - sine**2))
    return displacement, np.arcsin(sine)


@dataclass
class Particles:
    """The particles reaching the calorimeter, flattened over a block of photons.

    Attributes:
        event: Index of the photon each belongs to, shape ``(P,)``.
        energy: MeV, shape ``(P,)``.
        x, y: Impact point on the front face (mm, origin at the grid's centre), shape ``(P,)``.
        slope_y: dy/dz of the incidence (the bending), shape ``(P,)``.
        is_photon: Photons start their shower after a conversion depth, shape ``(P,)``.
    """

    event: np.ndarray
    energy: np.ndarray
    x: np.ndarray
    y: np.ndarray
    slope_y: np.ndarray
    is_photon: np.ndarray


class ParaFlowSimulator:
    """Makes ParaFlow showers with the fast engine.

    Args:
        setup: The detector, plate, field and beam.
    """

    def __init__(self, setup: ParaFlowSetup | None = None) -> None:
        self.setup = setup or ParaFlowSetup()

    def draw_conditions(
        self, n: int, rng: np.random.Generator, spectrum: EnergySpectrum | None = None
    ) -> dict[str, np.ndarray]:
        """Incident energy (MeV, from ``spectrum``, else the set-up's), plate thickness (X0) and
        distance (cm), uniform in their ranges outside the held-out bands."""
        s = self.setup
        spectrum = spectrum or EnergySpectrum.parse(s.default_spectrum)
        energy = spectrum.sample(n, rng)
        plate = {name: rng.uniform(*s.ranges[name], n) for name in CONDITIONS}
        redraw = s.in_held_out(plate)
        for _ in range(1000):
            if not redraw.any():
                break
            for name in CONDITIONS:
                plate[name][redraw] = rng.uniform(*s.ranges[name], int(redraw.sum()))
            redraw = s.in_held_out(plate)
        else:
            raise ValueError(
                f"paraflow: the held-out regions {s.held_out} leave almost nothing of the ranges to draw from"
            )
        return {"incident_energies": energy, **plate}

    def particles(self, energy: np.ndarray, thickness_x0: np.ndarray, distance_cm: np.ndarray,
                  rng: np.random.Generator) -> Particles:  # fmt: skip
        """What reaches the calorimeter for photons of ``energy`` (MeV) through the plate."""
        s = self.setup
        n = len(energy)
        x0 = rng.normal(0.0, s.source_smear_mm, n)
        y0 = rng.normal(0.0, s.source_smear_mm, n)
        converted = rng.random(n) < conversion_probability(thickness_x0)
        # the conversion depth in the plate, exponential of mean 9/7 X0 truncated to the plate
        u = rng.random(n) * conversion_probability(thickness_x0)
        depth_x0 = np.minimum(-9.0 / 7.0 * np.log1p(-u), thickness_x0)
        plate_back_mm = 10.0 * distance_cm - 0.5 * thickness_x0 * s.plate.radiation_length_mm
        flight_mm = plate_back_mm + (thickness_x0 - depth_x0) * s.plate.radiation_length_mm
        share = pair_energy_fraction(n, rng)
        remaining = thickness_x0 - depth_x0
        parts = [(np.flatnonzero(~converted), energy[~converted], np.zeros((~converted).sum()), 0, True)]
        radiated = np.zeros(n)
        for sign, fraction in ((-1, share), (+1, 1.0 - share)):  # electron to -y, positron to +y
            kept = energy * fraction * bremsstrahlung_retained(remaining, rng)
            radiated += energy * fraction - kept
            shift, angle = bending(kept / 1e3, s.field_tesla, flight_mm)
            reach = converted & np.isfinite(shift)
            parts.append((np.flatnonzero(reach), kept[reach], sign * shift[reach], sign * np.tan(angle[reach]), False))
        brem = converted & (radiated > 0)
        parts.append((np.flatnonzero(brem), radiated[brem], np.zeros(brem.sum()), 0, True))
        event = np.concatenate([p[0] for p in parts])
        return Particles(
            event=event,
            energy=np.concatenate([p[1] for p in parts]),
            x=x0[event],
            y=y0[event] + np.concatenate([p[2] for p in parts]),
            slope_y=np.concatenate([np.broadcast_to(p[3], len(p[0])) for p in parts]),
            is_photon=np.concatenate([np.full(len(p[0]), p[4]) for p in parts]),
        )

    def full_images(self, particles: Particles, n_events: int, rng: np.random.Generator) -> np.ndarray:
        """The 24 x 24 crystal energies (MeV) of the particles' showers, shape ``(n_events, 24, 24)``."""
        s = self.setup
        mat = s.crystal
        grid = s.full_grid
        p = particles
        # GFlash's profiles are not meant below a few tens of MeV: a softer particle takes their shape
        e_gev = np.maximum(p.energy / 1e3, 0.05)
        t_max, alpha = longitudinal_parameters(e_gev, mat.z_eff, mat.critical_energy_mev, rng)
        start = np.where(p.is_photon, rng.exponential(9.0 / 7.0, len(e_gev)), 0.0)
        width = np.exp(s.lateral_spread * rng.standard_normal(len(e_gev)))
        n_spots = np.maximum(np.rint(p.energy / s.spot_energy_mev), 20).astype(np.int64)
        owner = np.repeat(np.arange(len(e_gev)), n_spots)
        depth = rng.gamma(alpha[owner], t_max[owner] / (alpha[owner] - 1.0))
        tau = np.minimum(depth / t_max[owner], 10.0)  # GFlash's radial forms grow without bound in the far tail
        r_core, r_tail, core = radial_parameters(tau, e_gev[owner], mat.z_eff)
        radius = np.where(rng.random(len(owner)) < core, r_core, r_tail) * width[owner]
        u = rng.uniform(0.0, 0.999, len(owner))
        r_mm = radius * np.sqrt(u / (1.0 - u)) * mat.moliere_radius_mm
        phi = rng.uniform(0.0, 2 * np.pi, len(owner))
        depth_mm = (depth + start[owner]) * mat.radiation_length_mm
        x = p.x[owner] + r_mm * np.cos(phi)
        y = p.y[owner] + r_mm * np.sin(phi) + depth_mm * p.slope_y[owner]
        ix = np.floor(x / grid.crystal_width_mm + 0.5 * grid.n_x).astype(np.int64)
        iy = np.floor(y / grid.crystal_width_mm + 0.5 * grid.n_y).astype(np.int64)
        inside = (ix >= 0) & (ix < grid.n_x) & (iy >= 0) & (iy < grid.n_y) & (depth_mm < s.crystal_length_mm)
        spot_energy = (p.energy / n_spots)[owner]
        cell = (p.event[owner] * grid.n_x + ix) * grid.n_y + iy
        images = np.bincount(cell[inside], weights=spot_energy[inside], minlength=n_events * grid.n_voxels)
        sigma = s.stochastic_term * np.sqrt(images * 1e3)  # MeV: 2.8% sqrt(E / GeV) GeV
        images = np.clip(images + sigma * rng.standard_normal(images.shape), 0.0, None)
        return images.reshape(n_events, grid.n_x, grid.n_y)

    def crop(self, images: np.ndarray) -> np.ndarray:
        """The window of each image with the largest energy sum, shape ``(B, 8, 16)``."""
        wx, wy = self.setup.window.shape
        c = np.pad(images.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
        sums = c[:, wx:, wy:] - c[:, :-wx, wy:] - c[:, wx:, :-wy] + c[:, :-wx, :-wy]
        best = sums.reshape(len(images), -1).argmax(1)
        ox, oy = np.unravel_index(best, sums.shape[1:])
        rows = ox[:, None, None] + np.arange(wx)[None, :, None]
        cols = oy[:, None, None] + np.arange(wy)[None, None, :]
        return images[np.arange(len(images))[:, None, None], rows, cols]

    def simulate(self, conditions: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Cropped showers (MeV, ``(B, 128)``) for ``incident_energies`` (MeV), ``plate_thickness``
        (X0) and ``plate_distance`` (cm), each ``(B,)``."""
        energy = np.asarray(conditions["incident_energies"], dtype=float).reshape(-1)
        particles = self.particles(energy, np.asarray(conditions[PLATE_THICKNESS], dtype=float).reshape(-1),
                                   np.asarray(conditions[PLATE_DISTANCE], dtype=float).reshape(-1), rng)  # fmt: skip
        images = self.full_images(particles, len(energy), rng)
        return self.crop(images).reshape(len(energy), -1)

    def blocks(self, n: int, seed: int, fixed: dict[str, float] | None = None, spectrum: EnergySpectrum | None = None,
               block_size: int = BLOCK_SIZE) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:  # fmt: skip
        """Yield ``(conditions, showers)`` blocks until ``n`` showers are made; ``fixed`` holds
        plate conditions at one value instead of drawing them."""
        spectrum = spectrum or EnergySpectrum.parse(self.setup.default_spectrum)
        for index, lo in enumerate(range(0, n, block_size)):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            conditions = self.draw_conditions(min(block_size, n - lo), rng, spectrum)
            for name, value in (fixed or {}).items():
                conditions[name] = np.full(len(conditions[name]), float(value))
            yield conditions, self.simulate(conditions, rng)


def simulate_paraflow_to_file(
    n: int, out: str | os.PathLike[str], spectrum: EnergySpectrum | str | None = None, seed: int = 0,
    fixed: dict[str, float] | None = None, setup: ParaFlowSetup | None = None, dtype: str = "float32",
    force: bool = False, progress: bool = True,
) -> Path:  # fmt: skip
    """Simulate ``n`` ParaFlow showers into an HDF5 file: ``incident_energies`` (MeV), ``showers``
    (the 8 x 16 window, MeV), ``plate_thickness`` (X0) and ``plate_distance`` (cm).

    The file appears only when complete; an existing file is kept unless ``force``.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    unknown = set(fixed or {}) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"paraflow: no condition {sorted(unknown)}; its plate conditions are {list(CONDITIONS)}")
    simulator = ParaFlowSimulator(setup)
    spectrum = spectrum or simulator.setup.default_spectrum
    spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
    attrs = {"generator": "calosurrogate parametrized shower simulator (ParaFlow set-up; not Geant4)",
             "detector": simulator.setup.name, "energy_spectrum": spectrum.spec, "seed": seed, "plate_thickness_unit": "X0 of iron",
             "plate_distance_unit": "cm", "fixed_conditions": str(dict(fixed or {})),
             "plate_thickness_range_x0": simulator.setup.thickness_range_x0, "plate_distance_range_cm": simulator.setup.distance_range_cm,
             "held_out": str(list(simulator.setup.held_out))}  # fmt: skip
    dims = dict.fromkeys(CONDITIONS, 1)
    with ShowerWriter(out, simulator.setup.window.n_voxels, dtype=dtype, force=force, condition_dims=dims,
                      attrs=attrs) as writer:  # fmt: skip
        bar = tqdm(total=n, desc="simulate paraflow", unit="shower", disable=not progress)
        for conditions, showers in simulator.blocks(n, seed, fixed, spectrum):
            writer.write(conditions["incident_energies"], showers, {k: conditions[k] for k in CONDITIONS})
            bar.update(len(showers))
        bar.close()
    return Path(out)
