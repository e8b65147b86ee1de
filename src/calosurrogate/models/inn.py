"""CaloINN-style surrogate: one coupling spline flow over the whole shower.

After Ernst, Favaro, Krause, Plehn and Shih, "Normalizing flows for high-dimensional
detector simulations", arXiv:2312.09290 (CaloINN): voxels divided by the incident energy,
logit, standardised, and modelled by a conditional coupling flow with rational-quadratic
splines, so that sampling is one network pass per transform. Best suited to showers of a
few hundred voxels (dataset 1); its size grows with the voxel count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from calosurrogate.data.transforms import Logit, Standardize, divide_by_incident
from calosurrogate.models.base import Surrogate, register
from calosurrogate.models.components import coupling_spline_flow, flow_from_noise, flow_log_prob


@dataclass
class CaloINNConfig:
    """Settings of the CaloINN family.

    Attributes:
        transforms, hidden, bins: Coupling flow size.
        logit_delta: ``delta`` of the logit preprocessing.
        energy_cut_mev: Sampling cut and training-noise width (None: the dataset's threshold).
        seed: Seed of the fixed random masks.
    """

    transforms: int = 8
    hidden: int = 256
    bins: int = 8
    logit_delta: float = 1e-6
    energy_cut_mev: float | None = None
    seed: int = 0


@register("inn")
class CaloINN(Surrogate):
    """Coupling spline flow on ``voxels / E_inc`` (see module docstring)."""

    config_class = CaloINNConfig

    def __init__(self, config: CaloINNConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        self.conditions_map = self.new_condition_map()
        self.logit = Logit(config.logit_delta)
        self.scaler = Standardize(geometry.n_voxels)
        self.flow = coupling_spline_flow(
            geometry.n_voxels, len(condition_names), config.transforms, config.hidden, config.bins, config.seed
        )

    def _encode(self, showers: Tensor, conditions: Tensor) -> Tensor:
        return self.logit(divide_by_incident(showers, conditions[:, :1]).clamp(0.0, 1.0))

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        self.scaler.fit(self._encode(showers, conditions))
        self._fitted.fill_(True)

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        x = self.scaler(self._encode(showers, conditions))
        return -flow_log_prob(self.flow, x, self.conditions_map(conditions)) / self.geometry.n_voxels

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        return (torch.randn(len(conditions), self.geometry.n_voxels, device=conditions.device),)

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        x = flow_from_noise(self.flow, self.conditions_map(conditions), noise[0])
        return self.logit.inverse(self.scaler.inverse(x)) * conditions[:, :1].float()
