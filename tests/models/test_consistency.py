"""Consistency distillation: a one-step student matches its many-step flow-matching teacher on a toy."""

from __future__ import annotations

import copy

import torch
from torch import nn

from calosurrogate.models.components.consistency import (
    consistency_distillation_loss,
    consistency_function,
    flow_matching_loss,
    sample_ode,
    sample_one_step,
)


class _Velocity(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 128),
                                 nn.SiLU(), nn.Linear(128, 2))  # fmt: skip

    def forward(self, x, t, context):
        return self.net(torch.cat([x, t[:, None], context], -1))


def _toy(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two modes at x = +-2 whose height y = -2 or +2 the context chooses."""
    context = torch.randint(0, 2, (n, 1)).float()
    sign = torch.randint(0, 2, (n,)).float() * 2 - 1
    return torch.stack([2 * sign, 4 * context[:, 0] - 2], -1) + 0.3 * torch.randn(n, 2), context


def _energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean())


def test_one_step_student_matches_its_teacher() -> None:
    torch.manual_seed(0)
    teacher = _Velocity()
    opt = torch.optim.Adam(teacher.parameters(), 2e-3)
    for _ in range(1000):
        x, c = _toy(512)
        loss = flow_matching_loss(teacher, x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    student, target = copy.deepcopy(teacher), copy.deepcopy(teacher).requires_grad_(False)
    opt = torch.optim.Adam(student.parameters(), 5e-4)
    for _ in range(600):
        x, c = _toy(512)
        loss = consistency_distillation_loss(student, target, teacher, x, c, steps=16).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, q in zip(target.parameters(), student.parameters(), strict=True):
                p.lerp_(q, 0.05)
    data, context = _toy(2000)
    noise = torch.randn(2000, 2)
    many = sample_ode(teacher, noise, context, steps=16)
    assert _energy_distance(many, data) < 0.03  # the teacher learnt the toy
    # one step of the teacher alone lands between the modes; the distilled student on them
    assert _energy_distance(sample_one_step(teacher, noise, context), many) > 0.3
    assert _energy_distance(sample_one_step(student, noise, context), many) < 0.03
    # the student follows the context: it puts context 1 high and context 0 low
    one = sample_one_step(student, noise, context)
    assert one[context[:, 0] == 1, 1].mean() > 1.5 and one[context[:, 0] == 0, 1].mean() < -1.5


def test_the_consistency_function_is_the_identity_at_time_zero() -> None:
    velocity = _Velocity()
    x, c = _toy(10)
    torch.testing.assert_close(consistency_function(velocity, x, torch.zeros(10), c), x)
    assert not torch.allclose(consistency_function(velocity, x, torch.ones(10), c), x)
