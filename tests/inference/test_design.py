"""Conditions chosen through a likelihood: a toy surrogate whose mean loss has a known minimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from calosurrogate.inference import optimise_conditions


class ShiftedToy(nn.Module):
    """Showers of two 'voxels' x ~ N((a, E / 1000), 1) for conditions (E, a)."""

    condition_names = ("incident_energies", "a")

    def log_likelihood(self, showers: Tensor, conditions: Tensor) -> Tensor:
        means = torch.stack([conditions[:, 1], conditions[:, 0] / 1000], 1)
        return torch.distributions.Normal(means, 1.0).log_prob(showers).sum(1)

    def sample(self, conditions: np.ndarray, seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        means = np.stack([conditions[:, 1], conditions[:, 0] / 1000], 1)
        return rng.normal(means, 1.0).astype(np.float32)


def _conditions(n: int = 4000) -> np.ndarray:
    return np.stack([np.random.default_rng(0).uniform(1e3, 1e4, n), np.zeros(n)], 1)


def test_a_smooth_loss_reaches_its_analytic_minimum_from_afar() -> None:
    # mean of (x0 - 2)^2 is (a - 2)^2 + 1: the minimum is a = 2, loss 1
    design = optimise_conditions(ShiftedToy(), lambda x: (x[:, 0] - 2.0) ** 2, _conditions(), ("a",),
                                 {"a": (-5.0, 5.0)}, start={"a": -1.0}, rounds=12)  # fmt: skip
    assert design.values[0] == pytest.approx(2.0, abs=0.1)
    assert design.loss == pytest.approx(1.0, abs=4 * design.loss_error) and design.converged
    assert design.history[0]["values"] == [-1.0] and len(design.history) >= 2


def test_a_cut_is_no_obstacle_and_a_boundary_optimum_stays_on_its_bound() -> None:
    # the share of showers outside |x0 - 1| < 0.5 is smallest at a = 1 (a step function of x,
    # no gradient of its own); the share above 3 is smallest at the lower bound
    window = optimise_conditions(ShiftedToy(), lambda x: (np.abs(x[:, 0] - 1.0) >= 0.5).astype(float),
                                 _conditions(), ("a",), {"a": (-3.0, 4.0)}, start={"a": 2.5}, rounds=12)  # fmt: skip
    assert window.values[0] == pytest.approx(1.0, abs=0.15)
    above = optimise_conditions(ShiftedToy(), lambda x: (x[:, 0] > 3.0).astype(float), _conditions(), ("a",),
                                {"a": (-1.0, 2.0)})  # fmt: skip
    assert above.values[0] == pytest.approx(-1.0, abs=1e-6)
