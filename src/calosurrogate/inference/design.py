"""Conditions chosen through a surrogate: the detector configuration that minimises a user's loss.

The loss is the mean of any per-shower function ``objective(showers) -> (N,)`` over showers the
surrogate makes at the conditions (the share of photons a shower-shape cut tags as converted,
say). The function need not be differentiable: the gradient comes from the surrogate's exact
density instead. Showers drawn at the current point theta_k are reweighted to any nearby theta by
``p(x | theta) / p(x | theta_k)`` (self-normalised importance sampling), which makes the estimated
loss a smooth, deterministic function of theta with gradients through the flow; it is minimised
with L-BFGS-B inside a trust region where the weights keep enough effective showers, then showers
are drawn afresh at the new point, until the step is small.

A model is a surrogate with ``condition_names``, ``sample(conditions, seed=...)`` and a
differentiable ``log_likelihood(showers, conditions)`` (the flow families); shapes are ``(N, V)``
showers in MeV and ``(N, C)`` conditions in the model's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from calosurrogate.inference.conditions import _free_columns, dequantised


@dataclass
class Design:
    """The chosen conditions and how the search went.

    Attributes:
        names: The free conditions.
        values: ``(P,)`` the chosen point, in the conditions' units.
        loss: Mean objective of fresh showers at ``values``, and ``loss_error`` its standard error.
        history: Per round: the point, the mean objective of that round's showers and its error.
        converged: The last step was below the tolerance, inside the rounds allowed.
    """

    names: tuple[str, ...]
    values: np.ndarray
    loss: float
    loss_error: float
    history: list[dict[str, Any]] = field(default_factory=list)
    converged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "values": self.values.tolist(), "loss": self.loss,
                "loss_error": self.loss_error, "converged": self.converged, "history": self.history}  # fmt: skip


R9_CONVERTED = 0.94  # CMS's split: a photon whose R9 falls below it is treated as converted


def converted_tag_loss(showers: np.ndarray, geometry: Any) -> np.ndarray:
    """Minus one for each crystal image ``(N, n_x * n_y)`` whose R9 tags it as a converted photon.

    At a fixed plate thickness the share of photons this tag flags rises with how well it separates
    converted from unconverted ones, since unconverted photons' showers do not change with the
    plate's distance: minimising its mean chooses the distance that best separates them.
    """
    from calosurrogate.metrics.crystal_shapes import crystal_shower_shapes

    images = np.asarray(showers).reshape(len(showers), geometry.n_x, geometry.n_y)
    return -(crystal_shower_shapes(images)["r9"] < R9_CONVERTED).astype(float)


def objective_from_spec(spec: str, geometry: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A per-shower loss by name: ``converted-tag`` (built in), ``FILE.py:FUNCTION`` or
    ``MODULE:FUNCTION``, a function of showers ``(N, V)`` MeV returning ``(N,)``."""
    import importlib
    import importlib.util

    if spec == "converted-tag":
        return lambda showers: converted_tag_loss(showers, geometry)
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise ValueError(f"objective {spec!r}: expected converted-tag, FILE.py:FUNCTION or MODULE:FUNCTION")
    if where.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location("calosurrogate_user_objective", where)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"objective {spec!r}: cannot load {where}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"objective {spec!r}: {where} has no function {name!r}")
    return function


def _mean_and_error(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def optimise_conditions(
    model: Any,
    objective: Callable[[np.ndarray], np.ndarray],
    conditions: np.ndarray,
    free: Sequence[str],
    bounds: dict[str, tuple[float, float]],
    start: dict[str, float] | None = None,
    rounds: int = 8,
    trust: float = 0.5,
    min_effective: float = 0.5,
    tolerance: float = 0.01,
    seed: int = 0,
) -> Design:
    """Minimise the mean of ``objective`` over showers the surrogate makes, in the ``free`` conditions.

    Args:
        model: A surrogate with an exact, differentiable likelihood (see module docstring).
        objective: Per-shower loss of showers ``(N, V)`` MeV, returning ``(N,)``.
        conditions: ``(N, C)`` the showers to make each round (their incident energies and other
            known conditions); the free columns' values are ignored.
        free: Names of the conditions to choose, shared by every shower.
        bounds: Each free condition's range (the surrogate's training range at most).
        start: The first point (default: the middle of the bounds).
        rounds: Draws of fresh showers at most.
        trust: Half-width of the trust region, in units of each condition's half range.
        min_effective: Share of effective showers ``(sum w)^2 / sum w^2`` the reweighting must
            keep; a step that loses more is halved.
        tolerance: A step shorter than this (in half ranges) ends the search.
        seed: Seed of the first round's showers (round k uses ``seed + k``).
    """
    from scipy.optimize import minimize

    columns = _free_columns(model, free)
    low = np.array([bounds[name][0] for name in free], dtype=float)
    high = np.array([bounds[name][1] for name in free], dtype=float)
    centre, half = (low + high) / 2, (high - low) / 2
    base = np.array(conditions, dtype=float)
    u = np.zeros(len(free)) if start is None else (np.array([start[n] for n in free], dtype=float) - centre) / half
    weights = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = weights.device if weights is not None else torch.device("cpu")

    def at(point: np.ndarray) -> np.ndarray:
        c = base.copy()
        c[:, columns] = centre + half * point
        return c

    def log_likelihood(x: Tensor, point: Tensor) -> Tensor:
        c = torch.as_tensor(base, dtype=torch.float32, device=device).clone()
        c[:, columns] = (torch.as_tensor(centre) + torch.as_tensor(half) * point).to(device=device, dtype=torch.float32)
        return model.log_likelihood(x, c).double().cpu()

    history, converged, radius = [], False, trust
    for k in range(rounds):
        showers = model.sample(at(u), seed=seed + k)
        f = np.asarray(objective(showers), dtype=float)
        loss, error = _mean_and_error(f)
        history.append({"values": (centre + half * u).tolist(), "loss": loss, "loss_error": error})
        # the reweighting's densities of dequantised showers, as in fit_conditions (the objective sees them as made)
        x = dequantised(model, torch.as_tensor(showers, dtype=torch.float32, device=device), seed + k)
        f_t = torch.as_tensor(f, dtype=torch.float64)
        with torch.no_grad():
            reference = log_likelihood(x, torch.as_tensor(u))

        def reweighted(point: np.ndarray, x=x, f_t=f_t, reference=reference) -> tuple[float, np.ndarray, float]:
            leaf = torch.as_tensor(point, dtype=torch.float64).requires_grad_(True)
            w = torch.softmax(log_likelihood(x, leaf) - reference, 0)
            value = (w * f_t).sum()
            value.backward()
            return float(value.detach()), leaf.grad.numpy().copy(), float(1.0 / (w.detach() ** 2).sum())

        # the largest trust region whose reweighting keeps enough effective showers, found by halving
        # (and grown again next round: a flat stretch of the loss is crossed in a few rounds)
        radius = min(trust, 2 * radius)
        for _ in range(8):
            box = list(zip(np.maximum(u - radius, -1.0), np.minimum(u + radius, 1.0), strict=True))
            result = minimize(lambda p: reweighted(p)[:2], u, jac=True, method="L-BFGS-B", bounds=box)
            if reweighted(result.x)[2] >= min_effective * len(f):
                break
            radius /= 2
        step = float(np.max(np.abs(result.x - u)))
        u = np.clip(result.x, -1.0, 1.0)
        if step < tolerance:
            converged = True
            break
    final = np.asarray(objective(model.sample(at(u), seed=seed + rounds)), dtype=float)
    loss, error = _mean_and_error(final)
    return Design(tuple(free), centre + half * u, loss, error, history, converged)
