"""One conditional flow over every voxel of a shower, on ``voxels / E_inc`` after a logit.

The shared part of the single-stage flow families (CaloINN's coupling flow, ParaFlow's MAF):
the preprocessing, the loss, sampling from noise and the exact likelihood in MeV. A family is
a small subclass that says which flow it builds.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor
from zuko.flows import Flow

from calosurrogate.data.transforms import Logit, Standardize, divide_by_incident
from calosurrogate.models.base import Surrogate
from calosurrogate.models.components.flows import flow_from_noise, flow_log_prob


class VoxelFlowSurrogate(Surrogate):
    """A flow on standardised ``logit(delta + (1 - 2 delta) voxels / E_inc)`` given the mapped conditions.

    Subclasses build the flow (:meth:`build_flow`); their config holds ``logit_delta`` and the
    flow's size. Shapes: showers ``(N, V)`` MeV, conditions ``(N, C)`` raw (column 0: MeV).
    """

    def __init__(self, config, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        self.conditions_map = self.new_condition_map()
        self.logit = Logit(config.logit_delta)
        self.scaler = Standardize(geometry.n_voxels)
        self.flow = self.build_flow(geometry.n_voxels, len(condition_names))

    @abstractmethod
    def build_flow(self, features: int, context: int) -> Flow:
        """The flow over ``features`` voxels given ``context`` mapped conditions."""

    def _fractions(self, showers: Tensor, conditions: Tensor) -> Tensor:
        return divide_by_incident(showers, conditions[:, :1]).clamp(0.0, 1.0)

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        self.scaler.fit(self.logit(self._fractions(showers, conditions)))
        self._fitted.fill_(True)

    def _flow_log_prob(self, showers: Tensor, conditions: Tensor) -> Tensor:
        x = self.scaler(self.logit(self._fractions(showers, conditions)))
        return flow_log_prob(self.flow, x, self.conditions_map(conditions))

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        return -self._flow_log_prob(showers, conditions) / self.geometry.n_voxels

    def log_likelihood(self, showers: Tensor, conditions: Tensor) -> Tensor:
        # the preprocessing's Jacobian depends on the showers and the incident energy only: it
        # makes the value a density in MeV^-V without moving a fit of the other conditions
        fractions = self._fractions(showers.float(), conditions.float())
        jacobian = self.logit.log_abs_det_jacobian(fractions) - torch.log(self.scaler.std).sum()
        jacobian = jacobian - self.geometry.n_voxels * torch.log(conditions[:, 0].float())
        return self._flow_log_prob(showers.float(), conditions.float()) + jacobian

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        return (torch.randn(len(conditions), self.geometry.n_voxels, device=conditions.device),)

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        x = flow_from_noise(self.flow, self.conditions_map(conditions), noise[0])
        return self.logit.inverse(self.scaler.inverse(x)) * conditions[:, :1].float()


__all__ = ["VoxelFlowSurrogate"]
