"""Flow matching and its consistency distillation to one step, for any velocity network.

The path runs from data ``x_0`` at ``t = 0`` to standard normal noise at ``t = 1`` on a straight
line, ``x_t = (1 - t) x_0 + t noise`` (Lipman et al., arXiv:2210.02747; Liu et al.,
arXiv:2209.03003); a network ``v(x_t, t, context)`` learns its velocity ``noise - x_0``, and
samples come from integrating the ODE from noise at ``t = 1`` back to ``t = 0``.

A *consistency function* maps any point of an ODE trajectory to its end at ``t = 0`` (Song et
al., arXiv:2303.01469). Written as ``f(x, t) = x - t v_s(x, t)`` with a student velocity network
``v_s``, it meets the boundary condition ``f(x, 0) = x`` exactly, and a student initialised from
the teacher starts as the teacher's one-Euler-step sampler. Consistency distillation then asks
``f(x_{t_{n+1}}, t_{n+1})`` to equal the slowly moving (EMA) target's ``f`` at the point one
teacher ODE step (Heun) further, ``x_{t_n}``: one network pass then samples (CaloClouds II,
arXiv:2309.05704, distils its point diffusion model the same way).

Shapes: ``x`` ``(N, D)``, ``t`` ``(N,)`` in [0, 1], ``context`` ``(N, C)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]


def flow_matching_loss(velocity: Velocity, x0: Tensor, context: Tensor) -> Tensor:
    """Per-row squared error of the predicted velocity at a uniform random time, ``(N,)``."""
    t = torch.rand(len(x0), device=x0.device)
    noise = torch.randn_like(x0)
    x_t = (1 - t[:, None]) * x0 + t[:, None] * noise
    return (velocity(x_t, t, context).float() - (noise - x0)).pow(2).mean(-1)


def heun_step(velocity: Velocity, x: Tensor, t_from: Tensor, t_to: Tensor, context: Tensor) -> Tensor:
    """One second-order (Heun) step of the ODE from ``t_from`` to ``t_to`` (per row)."""
    dt = (t_to - t_from)[:, None]
    slope = velocity(x, t_from, context).float()
    guess = x + dt * slope
    return x + dt * 0.5 * (slope + velocity(guess, t_to, context).float())


@torch.no_grad()
def sample_ode(velocity: Velocity, noise: Tensor, context: Tensor, steps: int) -> Tensor:
    """Integrate from ``noise`` at ``t = 1`` to ``t = 0`` in ``steps`` Heun steps (the last one
    Euler, as ``2 steps - 1`` network passes in all)."""
    x = noise.float()
    grid = torch.linspace(1.0, 0.0, steps + 1, device=x.device)
    for k in range(steps):
        t_from = grid[k].expand(len(x))
        t_to = grid[k + 1].expand(len(x))
        if k == steps - 1:
            x = x + (t_to - t_from)[:, None] * velocity(x, t_from, context).float()
        else:
            x = heun_step(velocity, x, t_from, t_to, context)
    return x


def consistency_function(velocity: Velocity, x: Tensor, t: Tensor, context: Tensor) -> Tensor:
    """``f(x, t) = x - t v(x, t)``: the trajectory's end at ``t = 0`` (exactly ``x`` at ``t = 0``)."""
    return x - t[:, None] * velocity(x, t, context).float()


@torch.no_grad()
def sample_one_step(velocity: Velocity, noise: Tensor, context: Tensor) -> Tensor:
    """The consistency model's one-pass sample from ``noise`` at ``t = 1``."""
    return consistency_function(velocity, noise.float(), torch.ones_like(noise[:, 0], dtype=torch.float32), context)


def consistency_distillation_loss(student: Velocity, target: Velocity, teacher: Velocity, x0: Tensor,
                                  context: Tensor, steps: int) -> Tensor:  # fmt: skip
    """Per-row consistency-distillation loss on a grid of ``steps`` equal time intervals, ``(N,)``.

    ``target`` is the student's slowly updated copy (EMA), ``teacher`` the flow-matching model.
    """
    n = torch.randint(0, steps, (len(x0),), device=x0.device)
    t_high, t_low = (n + 1).float() / steps, n.float() / steps
    noise = torch.randn_like(x0)
    x_high = (1 - t_high[:, None]) * x0 + t_high[:, None] * noise
    with torch.no_grad():
        x_low = heun_step(teacher, x_high, t_high, t_low, context)
        aim = consistency_function(target, x_low, t_low, context)
    return (consistency_function(student, x_high, t_high, context) - aim).pow(2).mean(-1)
