"""Preprocessing transforms with fit / forward / inverse, saved with the model.

Each transform is a ``torch.nn.Module`` whose fitted statistics are buffers, so they travel
in the model's ``state_dict`` and load with ``torch.load(weights_only=True)``; all work on
tensors of any device. Shapes: ``(N, D)`` unless stated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConditionMap(nn.Module):
    """Map conditions to ``[-1, 1]`` per column: log map for positive scale-like columns
    (the incident energy, as in ParaFlow), linear otherwise.

    Args:
        n_conditions: Number of condition columns.
        log_columns: Which columns use the log map (column 0, the incident energy, by default).
    """

    def __init__(self, n_conditions: int, log_columns: tuple[int, ...] = (0,)) -> None:
        super().__init__()
        mask = torch.zeros(n_conditions, dtype=torch.bool)
        mask[list(log_columns)] = True
        self.register_buffer("log_mask", mask)
        self.register_buffer("low", torch.zeros(n_conditions))
        self.register_buffer("high", torch.ones(n_conditions))

    def _pre(self, conditions: Tensor) -> Tensor:
        return torch.where(self.log_mask, torch.log(conditions.clamp_min(1e-30)), conditions)

    @torch.no_grad()
    def fit(self, conditions: Tensor) -> ConditionMap:
        """Learn each column's range from training conditions ``(N, C)``."""
        values = self._pre(conditions.double())
        low, high = values.min(0).values, values.max(0).values
        same = high <= low
        self.low.copy_(torch.where(same, low - 0.5, low).float())
        self.high.copy_(torch.where(same, high + 0.5, high).float())
        return self

    def forward(self, conditions: Tensor) -> Tensor:
        """Raw conditions (MeV, ...) -> ``[-1, 1]``."""
        return 2 * (self._pre(conditions.float()) - self.low) / (self.high - self.low) - 1

    def inverse(self, mapped: Tensor) -> Tensor:
        """``[-1, 1]`` -> raw conditions."""
        values = (mapped + 1) / 2 * (self.high - self.low) + self.low
        return torch.where(self.log_mask, torch.exp(values), values)


class Logit(nn.Module):
    """``x in [0, 1] -> logit(delta + (1 - 2 delta) x)``; the inverse clips back to ``[0, 1]``."""

    def __init__(self, delta: float = 1e-6) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: Tensor) -> Tensor:
        """``[0, 1] -> R``."""
        return torch.logit(self.delta + (1 - 2 * self.delta) * x)

    def inverse(self, y: Tensor) -> Tensor:
        """``R -> [0, 1]``."""
        return ((torch.sigmoid(y) - self.delta) / (1 - 2 * self.delta)).clamp(0.0, 1.0)

    def log_abs_det_jacobian(self, x: Tensor) -> Tensor:
        """``log |dy/dx|`` summed over the last axis, for likelihoods in the original space."""
        z = self.delta + (1 - 2 * self.delta) * x
        return (torch.log(torch.tensor(1 - 2 * self.delta)) - torch.log(z) - torch.log1p(-z)).sum(-1)


class Standardize(nn.Module):
    """Subtract the fitted mean and divide by the fitted standard deviation, per column."""

    def __init__(self, n_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, x: Tensor, mask: Tensor | None = None) -> Standardize:
        """Learn mean and standard deviation from ``(N, D)``.

        Args:
            x: Values, ``(N, D)``.
            mask: Which entries count, ``(N, D)`` bool (None: all). A column with fewer than two
                counted entries keeps mean 0 and standard deviation 1.
        """
        if mask is None:
            self.mean.copy_(x.double().mean(0).float())
            self.std.copy_(x.double().std(0).clamp_min(self.eps).float())
            return self
        weight = mask.double()
        count = weight.sum(0)
        mean = (x.double() * weight).sum(0) / count.clamp_min(1.0)
        var = (((x.double() - mean) ** 2) * weight).sum(0) / (count - 1.0).clamp_min(1.0)
        enough = count >= 2
        self.mean.copy_(torch.where(enough, mean, torch.zeros_like(mean)).float())
        self.std.copy_(torch.where(enough, var.sqrt().clamp_min(self.eps), torch.ones_like(var)).float())
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Standardise."""
        return (x - self.mean) / self.std

    def inverse(self, y: Tensor) -> Tensor:
        """Undo the standardisation."""
        return y * self.std + self.mean


def divide_by_incident(showers: Tensor, incident_energies: Tensor) -> Tensor:
    """Voxel energies as fractions of the incident energy: ``(N, V) / (N, 1)``."""
    return showers / incident_energies.reshape(-1, 1)


def dequantize(showers: Tensor, noise_mev: float, generator: torch.Generator | None = None) -> Tensor:
    """Add uniform noise in ``[0, noise_mev)`` so that exact zeros get a density (undone by the cut at sampling)."""
    if noise_mev <= 0:
        return showers
    noise = torch.rand(showers.shape, generator=generator, device="cpu").to(showers.device)
    return showers + noise_mev * noise
