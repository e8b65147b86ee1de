"""ShowerFlow: how many points a shower has and how its points and energy share out over the layers.

A coupling spline flow (:func:`~calosurrogate.models.components.coupling_spline_flow`: one
network pass each way, so a shower at batch 1 costs a few passes) over, per shower,
``[ln n_points, ln E_visible, n_l / n_points (per layer), E_l / E_visible (per layer)]`` and, where
asked, the shower's energy-weighted centre of gravity ``(x, y)`` (mm, local frame), standardised,
given the shower's standardised conditions (CaloClouds II's ShowerFlow, arXiv:2309.05704, whose
centre of gravity the generated points are moved onto; conditioned on the direction too as in
CaloClouds3, arXiv:2511.01460).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate.models.components import coupling_spline_flow, flow_from_noise, flow_log_prob

JITTER = 0.01  # standard deviations of noise on the standardised targets: counts are discrete


@dataclass
class LayerBudget:
    """What ShowerFlow says of a batch of showers.

    Attributes:
        points: Points per layer, ``(B, L)`` int64.
        energy: Visible energy per layer, MeV, ``(B, L)``.
        centre: Energy-weighted centre of gravity ``(x, y)``, mm in the local frame, ``(B, 2)``;
            None where the flow does not draw it.
    """

    points: Tensor
    energy: Tensor
    centre: Tensor | None = None


def layer_targets(n_points: np.ndarray, energy: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """ShowerFlow's raw targets from points and energy per layer (``(N, L)`` each) and, if given, the
    centres of gravity (``(N, 2)`` mm): ``(N, 2 + 2L)`` or ``(N, 4 + 2L)``."""
    n_total = np.maximum(n_points.sum(1, keepdims=True), 1)
    e_total = np.maximum(energy.sum(1, keepdims=True), 1e-6)
    parts = [np.log(n_total), np.log(e_total), n_points / n_total, energy / e_total]
    return np.concatenate(parts + ([] if centre is None else [centre]), axis=1)


def _largest_remainder(fractions: Tensor, totals: Tensor) -> Tensor:
    """Integer counts ``(B, L)`` summing to ``totals`` ``(B,)`` in the given proportions."""
    exact = fractions * totals[:, None]
    counts = exact.floor()
    short = (totals - counts.sum(1)).long()
    order = torch.argsort(exact - counts, dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(fractions.shape[1], device=fractions.device).expand_as(order))
    return (counts + (rank < short[:, None]).float()).long()


class ShowerFlow(nn.Module):
    """The flow with its standardisation.

    Args:
        n_layers: Layers of the calorimeter.
        n_conditions: Width of the standardised conditions.
        transforms, hidden, bins: The coupling flow's size.
        centre: Also draw the centre of gravity in x and y.
    """

    def __init__(self, n_layers: int, n_conditions: int, transforms: int, hidden: int, bins: int,
                 centre: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.n_layers = n_layers
        self.centre = centre
        features = 2 + 2 * n_layers + 2 * centre
        self.flow = coupling_spline_flow(features, n_conditions, transforms, hidden, bins)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def fit(self, targets: np.ndarray) -> None:
        """Standardisation from raw targets (:func:`layer_targets`)."""
        self.mean.copy_(torch.as_tensor(targets.mean(0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(np.maximum(targets.std(0), 1e-3), dtype=torch.float32))

    def loss(self, targets: Tensor, context: Tensor) -> Tensor:
        """Negative log-likelihood per shower (of the standardised, jittered targets)."""
        codes = (targets - self.mean) / self.std
        return -flow_log_prob(self.flow, codes + JITTER * torch.randn_like(codes), context)

    @torch.no_grad()
    def sample(self, context: Tensor, noise: Tensor | None = None) -> LayerBudget:
        """Points and energy per layer for showers of standardised ``context`` ``(B, C)``."""
        if noise is None:
            noise = torch.randn(len(context), len(self.mean), device=context.device)
        raw = flow_from_noise(self.flow, context, noise) * self.std + self.mean
        layers = self.n_layers
        n_total = raw[:, 0].clamp(max=12.0).exp().round().clamp(min=1)
        e_total = raw[:, 1].clamp(max=15.0).exp()
        point_share = raw[:, 2 : 2 + layers].clamp(min=0)
        point_share = point_share / point_share.sum(1, keepdim=True).clamp(min=1e-12)
        points = _largest_remainder(point_share, n_total)
        # energy only where there are points to carry it
        energy_share = raw[:, 2 + layers : 2 + 2 * layers].clamp(min=0) * (points > 0)
        energy_share = energy_share / energy_share.sum(1, keepdim=True).clamp(min=1e-12)
        centre = raw[:, 2 + 2 * layers :] if self.centre else None
        return LayerBudget(points, energy_share * e_total[:, None], centre)
