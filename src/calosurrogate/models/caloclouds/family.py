"""CaloClouds: photon showers of a highly granular calorimeter generated as clouds of points.

After CaloClouds II (Buss et al., arXiv:2309.05704) and CaloClouds3 (arXiv:2511.01460), for the
planar calorimeters of :mod:`calosurrogate.geometry.planar`. Given the photon's energy and
direction (standardised: the *conditions*):

1. :class:`~.showerflow.ShowerFlow` draws the shower's points and visible energy per layer, and
   its energy-weighted centre of gravity in ``x`` and ``y``.
2. The point model draws that many independent points ``(x, y, z, E)`` given the conditions
   and the number of points: a flow-matching *teacher* (many ODE steps) or its consistency-
   distilled *student* (one network pass), both :class:`PointVelocity` networks
   (:mod:`calosurrogate.models.components.consistency` owns their objectives and samplers).
3. Placement layer by layer: a shower's points sorted by ``z``, the first ``n_0`` go to layer
   0, the next ``n_1`` to layer 1, and so on; each layer's point energies are rescaled to
   ShowerFlow's energy of that layer; the shower's points are moved in ``x`` and ``y`` onto
   ShowerFlow's centre of gravity (CaloClouds II: independent points alone give the centre a
   spread of their own, which is not the showers').
4. Calibration fitted on training data after training: per incident-energy bin, a factor on
   the number of points (occupancy) and one on the energies, so that once projected onto the
   detector's cells and cut at half a MIP the mean number of hits and the mean visible energy
   match the training showers'.

Point coding: ``x, y`` as ``asinh(x / xy_scale_mm)`` (the radial profile's long tail),
``z`` as the layer number plus uniform noise in [0, 1), ``E`` as ``ln(E / MeV)``; each
standardised. Points are in the local frame (mm); energies in MeV.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate._io import atomic_output
from calosurrogate.data.points import ENERGY, LAYER, PointClouds, project
from calosurrogate.geometry.planar import PLANAR_CALORIMETERS, PlanarCalorimeter
from calosurrogate.models.base import CheckpointError, autocast_context, config_from_dict
from calosurrogate.models.caloclouds.showerflow import LayerBudget, ShowerFlow, _largest_remainder, layer_targets
from calosurrogate.models.components import mlp
from calosurrogate.models.components.consistency import sample_ode, sample_one_step

FAMILY = "caloclouds"
N_CONDITIONS = 4  # ln E, d_x, d_y, d_z


@dataclass
class CaloCloudsConfig:
    """Settings of the CaloClouds family.

    Attributes:
        hidden, layers: Width and hidden layers of the point networks.
        student_hidden, student_layers: The student's, if smaller (0: the teacher's, and the
            student starts as a copy of the teacher; else it starts afresh).
        time_features: Sine and cosine features of the ODE time.
        flow_transforms, flow_hidden, flow_bins: ShowerFlow's coupling spline flow.
        teacher_steps: Heun steps of the teacher's sampler.
        xy_scale_mm: Scale of the ``asinh`` coding of ``x`` and ``y``.
        calibration_bins: Incident-energy bins of the calibration.
        centre_of_gravity: ShowerFlow draws each shower's centre of gravity in ``x`` and ``y``
            and the points are moved onto it (False in model files written before it existed).
    """

    hidden: int = 128
    layers: int = 4
    time_features: int = 16
    flow_transforms: int = 6
    flow_hidden: int = 128
    flow_bins: int = 8
    teacher_steps: int = 16
    student_hidden: int = 0
    student_layers: int = 0
    xy_scale_mm: float = 5.0
    calibration_bins: int = 6
    centre_of_gravity: bool = True


class PointVelocity(nn.Module):
    """``v(x_t, t, context)`` of single points: an MLP on the point, sinusoidal time features and the context.

    Shapes: ``x`` ``(P, 4)``, ``t`` ``(P,)``, ``context`` ``(P, C)`` -> ``(P, 4)``.
    """

    def __init__(self, n_context: int, hidden: int, layers: int, time_features: int) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.pi * 2.0 ** torch.arange(time_features // 2).float())
        self.net = mlp(4 + 2 * (time_features // 2) + n_context, 4, hidden, layers)

    def forward(self, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
        phase = t[:, None] * self.frequencies
        return self.net(torch.cat([x, phase.sin(), phase.cos(), context], -1))


class CaloClouds(nn.Module):
    """The model: ShowerFlow, the teacher and the student, with their fitted codings and calibration.

    Args:
        config: Its settings.
        geometry: The planar calorimeter of its showers.
    """

    family = FAMILY

    def __init__(self, config: CaloCloudsConfig, geometry: PlanarCalorimeter) -> None:
        super().__init__()
        self.config = config
        self.geometry = geometry
        c = config
        self.showerflow = ShowerFlow(geometry.n_layers, N_CONDITIONS, c.flow_transforms, c.flow_hidden, c.flow_bins,
                                     c.centre_of_gravity)  # fmt: skip
        self.teacher = PointVelocity(N_CONDITIONS + 1, c.hidden, c.layers, c.time_features)
        self.student = PointVelocity(N_CONDITIONS + 1, c.student_hidden or c.hidden, c.student_layers or c.layers,
                                     c.time_features)  # fmt: skip
        for name, size in [("condition_mean", N_CONDITIONS), ("condition_std", N_CONDITIONS), ("code_mean", 4),
                           ("code_std", 4), ("count_mean", 1), ("count_std", 1)]:  # fmt: skip
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))
        self.register_buffer("distilled", torch.tensor(False))
        self.register_buffer("energy_range", torch.tensor([1.0, 1e6]))
        bins = c.calibration_bins
        self.register_buffer("calibration_log_energy", torch.linspace(0.0, 1.0, bins))
        self.register_buffer("calibration", torch.ones(2, bins))  # occupancy, energy

    # ------------------------------------------------------------------ codings
    def fit_preprocessing(self, clouds: PointClouds, rng: np.random.Generator | None = None) -> None:
        """Standardisations of conditions, point codes and counts, and ShowerFlow's, from training showers."""
        rng = rng or np.random.default_rng(0)
        raw = self.raw_conditions(clouds.incident_energies, clouds.directions)
        self.condition_mean.copy_(torch.as_tensor(raw.mean(0)))
        self.condition_std.copy_(torch.as_tensor(np.maximum(raw.std(0), 1e-3)))
        codes = self.raw_codes(clouds.points, rng)
        self.code_mean.copy_(torch.as_tensor(codes.mean(0)))
        self.code_std.copy_(torch.as_tensor(np.maximum(codes.std(0), 1e-3)))
        log_n = np.log(np.maximum(clouds.n_points, 1))
        self.count_mean.fill_(float(log_n.mean()))
        self.count_std.fill_(float(max(log_n.std(), 1e-3)))
        self.showerflow.fit(self.layer_targets(clouds))
        self.energy_range.copy_(torch.tensor([clouds.incident_energies.min(), clouds.incident_energies.max()]))
        edges = np.linspace(np.log(clouds.incident_energies.min()), np.log(clouds.incident_energies.max()),
                            self.config.calibration_bins)  # fmt: skip
        self.calibration_log_energy.copy_(torch.as_tensor(edges))

    @staticmethod
    def raw_conditions(incident_energies: np.ndarray, directions: np.ndarray) -> np.ndarray:
        return np.column_stack([np.log(np.asarray(incident_energies, np.float64)), directions]).astype(np.float32)

    def conditions(self, incident_energies: np.ndarray, directions: np.ndarray) -> Tensor:
        """Standardised conditions ``(B, 4)``."""
        raw = torch.as_tensor(self.raw_conditions(incident_energies, directions), device=self.condition_mean.device)
        return (raw - self.condition_mean) / self.condition_std

    def raw_codes(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Point codes before standardisation (``z`` dequantised with ``rng``), ``(M, 4)`` float32."""
        s = self.config.xy_scale_mm
        return np.column_stack([np.arcsinh(points[:, 0] / s), np.arcsinh(points[:, 1] / s),
                                points[:, LAYER] + rng.random(len(points)),
                                np.log(np.maximum(points[:, ENERGY], 1e-6))]).astype(np.float32)  # fmt: skip

    def codes(self, points: np.ndarray, rng: np.random.Generator) -> Tensor:
        """Standardised point codes ``(M, 4)``."""
        return (torch.as_tensor(self.raw_codes(points, rng)) - self.code_mean.cpu()) / self.code_std.cpu()

    def point_context(self, conditions: Tensor, n_points: Tensor) -> Tensor:
        """Each shower's point-model context: its conditions and standardised ``ln n_points``, ``(B, 5)``."""
        log_n = (n_points.float().clamp(min=1).log() - self.count_mean) / self.count_std
        return torch.cat([conditions, log_n[:, None]], -1)

    def layer_targets(self, clouds: PointClouds) -> np.ndarray:
        layers = self.geometry.n_layers
        flat = clouds.shower_index * layers + clouds.points[:, LAYER].astype(np.int64)
        n_points = np.bincount(flat, minlength=len(clouds) * layers).reshape(-1, layers)
        energy = np.bincount(flat, weights=clouds.points[:, ENERGY], minlength=len(clouds) * layers)
        centre = None
        if self.config.centre_of_gravity:
            weight = clouds.points[:, ENERGY].astype(np.float64)
            total = np.maximum(np.bincount(clouds.shower_index, weights=weight, minlength=len(clouds)), 1e-12)
            centre = np.column_stack([np.bincount(clouds.shower_index, weights=weight * clouds.points[:, k],
                                                  minlength=len(clouds)) / total for k in (0, 1)])  # fmt: skip
        return layer_targets(n_points, energy.reshape(-1, layers), centre).astype(np.float32)

    # ------------------------------------------------------------------ sampling
    def _factors(self, incident_energies: Tensor) -> tuple[Tensor, Tensor]:
        """Calibration factors (occupancy, energy) at these energies, linear in ``ln E`` between bin centres."""
        grid = self.calibration_log_energy
        x = incident_energies.log().clamp(grid[0], grid[-1])
        k = torch.searchsorted(grid, x.contiguous()).clamp(1, grid.shape[0] - 1)
        w = (x - grid[k - 1]) / (grid[k] - grid[k - 1]).clamp(min=1e-12)
        values = self.calibration[:, k - 1] * (1 - w) + self.calibration[:, k] * w
        return values[0], values[1]

    def budget(self, conditions: Tensor, incident_energies: Tensor, flow_noise: Tensor,
               calibrated: bool = True) -> tuple[LayerBudget, Tensor]:  # fmt: skip
        """ShowerFlow's points and energy per layer from its noise ``(B, 2 + 2L)``, with the calibration's
        factors applied; and the uncalibrated number of points, which the point model is conditioned on."""
        budget = self.showerflow.sample(conditions, flow_noise)
        n_shower = budget.points.sum(1)
        if calibrated:
            occupancy, energy_factor = self._factors(incident_energies)
            total = (n_shower.float() * occupancy).round().clamp(min=1)
            share = budget.points.float() / n_shower[:, None].clamp(min=1)
            budget = LayerBudget(_largest_remainder(share, total), budget.energy * energy_factor[:, None],
                                 budget.centre)  # fmt: skip
        return budget, n_shower

    def point_codes(self, noise: Tensor, context: Tensor, steps: int | None = None) -> Tensor:
        """Raw point codes (before placement) from noise ``(P, 4)`` and each point's shower context ``(P, 5)``."""
        if (steps is None and bool(self.distilled)) or steps == 0:
            codes = sample_one_step(self.student, noise, context)
        else:
            codes = sample_ode(self.teacher, noise, context, steps or self.config.teacher_steps)
        return codes * self.code_std + self.code_mean

    @torch.no_grad()
    def sample(self, incident_energies: np.ndarray, directions: np.ndarray, entry_points: np.ndarray | None = None,
               steps: int | None = None, calibrated: bool = True, seed: int | None = None,
               precision: str = "fp32") -> PointClouds:  # fmt: skip
        """Showers for the given conditions (MeV, unit vectors ``(B, 3)``, entry points ``(B, 2)`` mm).

        Args:
            steps: None: the one-step student where distilled, else the teacher's
                ``teacher_steps``; 0: the student (one pass); k > 0: the teacher with k Heun steps.
            calibrated: Apply the fitted occupancy and energy factors.
            seed: Seed of this call's noise (None: torch's global generator).
            precision: Autocast of the point networks' passes (fp32, bf16, auto); ShowerFlow and
                the placement stay in float32.
        """
        if seed is not None:
            torch.manual_seed(seed)
        device = self.condition_mean.device
        energies = np.asarray(incident_energies, np.float64).reshape(-1)
        directions = np.asarray(directions, np.float64).reshape(-1, 3)
        if entry_points is None:
            entry_points = np.zeros((len(energies), 2))
        conditions = self.conditions(energies, directions)
        flow_noise = torch.randn(len(energies), len(self.showerflow.mean), device=device)
        budget, n_context = self.budget(conditions, torch.as_tensor(energies, dtype=torch.float32, device=device),
                                        flow_noise, calibrated)  # fmt: skip
        shower = torch.repeat_interleave(torch.arange(len(energies), device=device), budget.points.sum(1))
        noise = torch.randn(len(shower), 4, device=device)
        with autocast_context(noise.device, precision):
            raw = self.point_codes(noise, self.point_context(conditions, n_context)[shower], steps)
        points, offsets = place_points(raw, shower, budget.points, budget.energy, self.config.xy_scale_mm,
                                       budget.centre)  # fmt: skip
        return PointClouds(energies, directions, np.asarray(entry_points, np.float64), offsets.cpu().numpy(),
                           points.cpu().numpy().astype(np.float32))  # fmt: skip

    # ------------------------------------------------------------------ calibration
    def calibrate(self, clouds: PointClouds, iterations: int = 3, seed: int = 0) -> dict[str, list[float]]:
        """Fit the occupancy and energy factors on training showers (see the module docstring).

        Per incident-energy bin: ``occupancy *= (hits_data / hits_model) ** 1.3`` and ``energy *=
        visible_data / visible_model``, ``iterations`` times. Returns the factors per bin.
        """
        geo = self.geometry
        cut = geo.mip_mev / 2
        data_hits = project(clouds, geo).above(cut)
        data_n, data_e = _per_shower(data_hits, len(clouds))
        log_e = np.log(clouds.incident_energies)
        grid = self.calibration_log_energy.cpu().numpy()
        nearest = np.abs(log_e[:, None] - grid[None, :]).argmin(1)
        self.calibration.fill_(1.0)
        for k in range(iterations):
            generated = PointClouds.concatenate([
                self.sample(clouds.incident_energies[lo : lo + 500], clouds.directions[lo : lo + 500],
                            clouds.entry_points[lo : lo + 500], seed=seed + 1000 * k + lo)
                for lo in range(0, len(clouds), 500)])  # fmt: skip
            gen_n, gen_e = _per_shower(project(generated, geo).above(cut), len(clouds))
            for b in range(len(grid)):
                inside = nearest == b
                if inside.sum() < 10:
                    continue
                ratio_n = data_n[inside].mean() / max(gen_n[inside].mean(), 1e-9)
                ratio_e = data_e[inside].mean() / max(gen_e[inside].mean(), 1e-9)
                self.calibration[0, b] *= float(np.clip(ratio_n**1.3, 0.5, 2.0))
                self.calibration[1, b] *= float(np.clip(ratio_e, 0.5, 2.0))
            self.calibration.clamp_(1 / 3, 3.0)
        return {"occupancy": self.calibration[0].tolist(), "energy": self.calibration[1].tolist()}

    # ------------------------------------------------------------------ files
    def checkpoint_dict(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": asdict(self.config), "geometry": self.geometry.name,
                "state_dict": self.state_dict()}  # fmt: skip

    def save(self, path: str | os.PathLike[str], force: bool = True) -> Path:
        """Weights, fitted codings and config in one file (``torch.load(weights_only=True)``), written atomically."""
        with atomic_output(path, force=force) as tmp:
            torch.save(self.checkpoint_dict(), tmp)
        return Path(path)


def place_points(raw: Tensor, shower: Tensor, points_per_layer: Tensor, energy_per_layer: Tensor,
                 xy_scale_mm: float, centre: Tensor | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Points to layers by their ``z`` order and the counts per layer; energies rescaled per layer;
    each shower moved in ``x`` and ``y`` so that its energy-weighted centre is ``centre``.

    Args:
        raw: Decoded codes ``(P, 4)`` (``asinh`` x and y, ``z``, ``ln E``), grouped by shower.
        shower: Each point's shower, ``(P,)``, non-decreasing.
        points_per_layer: ``(B, L)`` int64, summing to ``P``.
        energy_per_layer: MeV, ``(B, L)``.
        xy_scale_mm: The ``asinh`` coding's scale.
        centre: Each shower's centre of gravity ``(x, y)``, mm, ``(B, 2)``; None: not moved.

    Returns:
        ``points (P, 4)`` (x, y mm, layer, energy MeV), sorted by shower then layer, and ``offsets (B + 1,)``.
    """
    n_layers = points_per_layer.shape[1]
    order = torch.argsort(raw[:, 2], stable=True)
    order = order[torch.argsort(shower[order], stable=True)]
    raw = raw[order]
    # the k-th point (sorted by shower, then z) falls in the layer whose cumulative count passes k
    cumulative = points_per_layer.reshape(-1).cumsum(0)
    flat = torch.searchsorted(cumulative, torch.arange(raw.shape[0], device=raw.device), right=True)
    layer = flat % n_layers
    energy = raw[:, 3].clamp(max=20.0).exp()
    sums = torch.zeros(points_per_layer.numel(), device=raw.device).index_add_(0, flat, energy)
    energy = energy * (energy_per_layer.reshape(-1) / sums.clamp(min=1e-12))[flat]
    xy = xy_scale_mm * torch.sinh(raw[:, :2])
    if centre is not None:
        placed_shower = flat // n_layers  # the points are in placement order now
        weight = torch.zeros(centre.shape[0], device=raw.device).index_add_(0, placed_shower, energy)
        moment = torch.zeros_like(centre).index_add_(0, placed_shower, energy[:, None] * xy)
        xy = xy + (centre - moment / weight.clamp(min=1e-12)[:, None])[placed_shower]
    points = torch.cat([xy, layer.float()[:, None], energy[:, None]], -1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long, device=raw.device), points_per_layer.sum(1).cumsum(0)])
    return points, offsets


def _per_shower(hits: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    shower = hits.shower_index
    return np.bincount(shower, minlength=n).astype(np.float64), np.bincount(shower, weights=hits.energy, minlength=n)


def caloclouds_from_checkpoint(checkpoint: Any, source: str = "checkpoint") -> CaloClouds:
    """The model a loaded checkpoint (:meth:`CaloClouds.checkpoint_dict`) holds, ready to sample."""
    if not isinstance(checkpoint, dict) or checkpoint.get("family") != FAMILY:
        raise CheckpointError(f"{source}: not a saved {FAMILY} model")
    if checkpoint["geometry"] not in PLANAR_CALORIMETERS:
        raise CheckpointError(f"{source}: geometry {checkpoint['geometry']!r} unknown")
    values = {"centre_of_gravity": False, **checkpoint["config"]}  # files written before it existed
    model = CaloClouds(config_from_dict(CaloCloudsConfig, values, f"{source}: config"),
                       PLANAR_CALORIMETERS[checkpoint["geometry"]]())  # fmt: skip
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def load_caloclouds(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> CaloClouds:
    """A saved CaloClouds model, ready to sample."""
    return caloclouds_from_checkpoint(torch.load(path, map_location=map_location, weights_only=True), str(path))
