"""The conditions a sample of showers was made with, by maximum likelihood through a surrogate.

Some conditions are known per shower (the incident energy); others are shared by the whole
sample and free (a plate's thickness and distance, as in ParaFlow). Their estimate maximises
``sum_i log p(shower_i | known_i, free)`` with gradients through the surrogate's exact density;
their covariance is the Laplace approximation, the inverse Hessian of the negative
log-likelihood at the maximum (its curvature over one standard error, by differences of the
exact gradient). A surrogate is never the true density, and then the Hessian understates the
spread of the estimate; the sandwich covariance ``H^-1 J H^-1`` (Huber 1967; White,
Econometrica 50 (1982) 1), with ``J`` the sum of the showers' score outer products, holds for a
misspecified model too (bias it cannot mend). Pseudo-experiments check both: bias and
resolution of the estimates, and how often each quoted 68% interval holds the truth.

The showers are dequantised as the model's training saw them (uniform noise below its energy
cut on every voxel, :meth:`~calosurrogate.models.base.Surrogate.training_noise_mev`): a flow
models energies plus that noise, and an empty voxel's exact zero lies on the edge of the noise's
support, where the learned density is no guide. On a ParaFlow model, undequantised showers
(most of their crystals empty) gave a likelihood rising towards the largest plate thickness and
distance whatever the truth. The noise is drawn once per fit, so the likelihood stays a
deterministic function of the conditions.

A model is anything with ``condition_names`` and a differentiable ``log_likelihood(showers,
conditions)`` returning ``(N,)`` (the flow families); shapes are ``(N, V)`` showers in MeV and
``(N, C)`` conditions in the model's units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from calosurrogate.data.transforms import dequantize


class Likelihood(Protocol):
    condition_names: tuple[str, ...]

    def log_likelihood(self, showers: Tensor, conditions: Tensor) -> Tensor: ...


@dataclass
class ConditionFit:
    """One sample's estimate.

    Attributes:
        names: The free conditions.
        values: Their estimates ``(P,)``, in the conditions' units.
        covariance: Laplace covariance ``(P, P)`` (NaN where the Hessian is not positive definite).
        sandwich: Sandwich covariance ``(P, P)``, robust to a misspecified model (NaN likewise).
        log_likelihood: ``sum_i log p`` at the estimate.
        n_showers: Showers in the sample.
        converged: The optimiser stopped on its tolerance, the Hessian is positive definite and
            the estimate lies inside the bounds.
    """

    names: tuple[str, ...]
    values: np.ndarray
    covariance: np.ndarray
    sandwich: np.ndarray
    log_likelihood: float
    n_showers: int
    converged: bool

    @property
    def errors(self) -> np.ndarray:
        """Laplace standard errors ``(P,)``: the square roots of the covariance's diagonal."""
        return np.sqrt(np.diag(self.covariance))

    @property
    def sandwich_errors(self) -> np.ndarray:
        """Standard errors ``(P,)`` of the sandwich covariance."""
        return np.sqrt(np.diag(self.sandwich))

    def as_dict(self) -> dict[str, Any]:
        return {"values": dict(zip(self.names, self.values.tolist(), strict=True)),
                "errors": dict(zip(self.names, self.errors.tolist(), strict=True)),
                "covariance": self.covariance.tolist(), "sandwich_errors": dict(zip(self.names, self.sandwich_errors.tolist(), strict=True)),
                "sandwich": self.sandwich.tolist(), "log_likelihood": self.log_likelihood,
                "n_showers": self.n_showers, "converged": self.converged}  # fmt: skip


def _free_columns(model: Likelihood, free: Sequence[str]) -> list[int]:
    names = list(model.condition_names)
    missing = [name for name in free if name not in names]
    if missing or not free:
        raise ValueError(f"free conditions {list(free)}: the model's conditions are {names}"
                         + (f"; it has no {missing}" if missing else "; name at least one"))  # fmt: skip
    return [names.index(name) for name in free]


def dequantised(model: Any, showers: Tensor, seed: int) -> Tensor:
    """``showers`` ``(N, V)`` MeV plus the uniform noise the model was trained with (none for a
    model without :meth:`training_noise_mev`), drawn from ``seed``."""
    noise = float(model.training_noise_mev()) if hasattr(model, "training_noise_mev") else 0.0
    return dequantize(showers, noise, torch.Generator().manual_seed(seed))


def _difference_hessian(gradient: Any, at: Tensor, steps: Tensor) -> np.ndarray:
    """Symmetrised central differences of ``gradient`` (float64 ``(P,)``) around ``at``."""
    columns = []
    for k in range(len(at)):
        shift = torch.zeros_like(at)
        shift[k] = steps[k]
        columns.append((gradient(at + shift) - gradient(at - shift)).double().numpy() / (2 * float(steps[k])))
    hessian = np.stack(columns, 1)
    return (hessian + hessian.T) / 2


def fit_conditions(
    model: Likelihood,
    showers: np.ndarray | Tensor,
    conditions: np.ndarray | Tensor,
    free: Sequence[str],
    bounds: dict[str, tuple[float, float]],
    grid: int = 5,
    max_iterations: int = 100,
    chunk_size: int = 4096,
    seed: int = 0,
) -> ConditionFit:
    """Fit the ``free`` conditions, shared by every shower, by maximum likelihood.

    Args:
        model: A surrogate with an exact likelihood (see module docstring).
        showers: The sample, ``(N, V)`` MeV.
        conditions: ``(N, C)`` in the model's column order; the free columns' values are ignored.
        free: Names of the conditions to fit.
        bounds: Each free condition's range: where the start is searched (a grid of ``grid``
            points per condition) and the scale the optimiser works in. An estimate outside it is
            an extrapolation of the surrogate and is reported as not converged.
        max_iterations: L-BFGS iterations.
        chunk_size: Showers per network pass.
        seed: Seed of the dequantisation noise (see module docstring).
    """
    columns = _free_columns(model, free)
    missing = [name for name in free if name not in bounds]
    if missing:
        raise ValueError(f"no bounds for {missing}")
    weights = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = weights.device if weights is not None else torch.device("cpu")
    x = torch.as_tensor(np.asarray(showers), dtype=torch.float32, device=device)
    base = torch.as_tensor(np.asarray(conditions), dtype=torch.float32, device=device).clone()
    if x.ndim != 2 or base.ndim != 2 or len(x) != len(base) or len(x) == 0:
        raise ValueError(
            f"showers {tuple(x.shape)} and conditions {tuple(base.shape)} must be (N, V) and (N, C), N > 0"
        )
    x = dequantised(model, x, seed)
    low = torch.tensor([bounds[name][0] for name in free], dtype=torch.float64)
    high = torch.tensor([bounds[name][1] for name in free], dtype=torch.float64)
    centre, half = (low + high) / 2, (high - low) / 2

    def shower_log_likelihoods(theta: Tensor) -> Tensor:
        """``log p_i`` ``(N,)`` float64 at raw ``theta`` (float64 ``(P,)``), differentiable in ``theta``."""
        parts = []
        for lo in range(0, len(x), chunk_size):
            c = base[lo : lo + chunk_size].clone()
            c[:, columns] = theta.to(device=device, dtype=torch.float32)
            parts.append(model.log_likelihood(x[lo : lo + chunk_size], c).double().cpu())
        return torch.cat(parts)

    def total_log_likelihood(theta: Tensor) -> Tensor:
        return shower_log_likelihoods(theta).sum()

    def value_and_gradient(theta: Tensor) -> tuple[float, Tensor]:
        """``sum_i log p`` and its gradient, chunk by chunk (a sample need not fit in memory at once)."""
        leaf = theta.detach().clone().requires_grad_(True)
        total = 0.0
        for lo in range(0, len(x), chunk_size):
            c = base[lo : lo + chunk_size].clone()
            c[:, columns] = leaf.to(device=device, dtype=torch.float32)
            part = model.log_likelihood(x[lo : lo + chunk_size], c).double().sum()
            part.backward()
            total += float(part.detach())
        assert leaf.grad is not None
        return total, leaf.grad.detach().cpu()

    # the start: the best point of a grid over the bounds (the likelihood of a thousand showers is
    # sharp; a local optimiser started far away can stall on its flanks)
    with torch.no_grad():
        axes = [torch.linspace(-1 + 1 / grid, 1 - 1 / grid, grid, dtype=torch.float64)] * len(free)
        points = torch.cartesian_prod(*axes).reshape(-1, len(free))
        scores = torch.stack([total_log_likelihood(centre + half * p) for p in points])
    u = points[int(torch.argmax(scores))].clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([u], lr=1, max_iter=max_iterations, tolerance_grad=1e-7, tolerance_change=1e-10,
                                  line_search_fn="strong_wolfe")  # fmt: skip
    n = len(x)

    def closure() -> Tensor:
        # per shower, so that the tolerances do not depend on the sample's size
        value, gradient = value_and_gradient(centre + half * u.detach())
        u.grad = -(gradient * half) / n
        return torch.tensor(-value / n, dtype=torch.float64)

    optimiser.step(closure)
    state = optimiser.state[optimiser._params[0]]
    iterations = int(state.get("n_iter", 0))
    estimate = (centre + half * u).detach()

    # The curvature on the scale of the interval, not at a point: a flow's density is piecewise
    # smooth in its conditions (spline bins move with them), and on a ParaFlow model the pointwise
    # second derivative came out ten times below the second differences over one standard error.
    # Central differences of the exact gradient, first over 1% of each range, then over the
    # standard error that gives.
    steps = 0.01 * half
    for _ in range(2):
        hessian = _difference_hessian(lambda theta: -value_and_gradient(theta)[1], estimate, steps)
        try:
            np.linalg.cholesky(hessian)
            covariance, positive = np.linalg.inv(hessian), True
        except np.linalg.LinAlgError:
            covariance, positive = np.full_like(hessian, np.nan), False
            break
        steps = torch.as_tensor(np.sqrt(np.diag(covariance))).clamp(1e-4 * half, 0.1 * half)
    sandwich = np.full_like(covariance, np.nan)
    if positive:
        # each shower's score by central differences over the same scale as the curvature
        with torch.no_grad():
            scores = torch.stack([(shower_log_likelihoods(estimate + shift) - shower_log_likelihoods(estimate - shift))
                                  / (2 * float(shift.abs().sum())) for shift in torch.diag(steps)], 1).numpy()  # fmt: skip
        sandwich = covariance @ (scores.T @ scores) @ covariance
    inside = bool(torch.all((estimate >= low) & (estimate <= high)))
    with torch.no_grad():
        value = float(total_log_likelihood(estimate))
    converged = positive and inside and iterations < max_iterations and math.isfinite(value)
    return ConditionFit(tuple(free), estimate.numpy(), covariance, sandwich, value, n, converged)


@dataclass
class PseudoExperiments:
    """Fits of many samples with known truth, and how well they are calibrated.

    Attributes:
        names: The free conditions.
        truth, values, errors, sandwich_errors: ``(K, P)`` per sample (errors: Laplace).
        converged: ``(K,)``.
        summary: Per condition: ``bias`` (mean of estimate - truth) and its standard error,
            ``resolution`` (standard deviation of estimate - truth), ``mean_error`` (the mean quoted
            error), ``coverage`` (share of samples whose quoted 68% interval, estimate +- error,
            holds the truth) with its binomial standard error, and the pulls' mean and standard
            deviation; over the converged samples; with the Laplace errors, and under
            ``"sandwich"`` the same with the sandwich errors.
    """

    names: tuple[str, ...]
    truth: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    sandwich_errors: np.ndarray
    converged: np.ndarray
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "samples": len(self.truth), "converged": int(self.converged.sum()),
                "converged_each": self.converged.tolist(),
                "summary": self.summary, "truth": self.truth.tolist(), "values": self.values.tolist(),
                "errors": self.errors.tolist(), "sandwich_errors": self.sandwich_errors.tolist()}  # fmt: skip


def calibration(truth: np.ndarray, values: np.ndarray, errors: np.ndarray) -> dict[str, float]:
    """Bias, resolution, mean error, 68% coverage and pulls of one condition's estimates ``(K,)``."""
    residual = values - truth
    k = len(residual)
    covered = np.abs(residual) <= errors
    coverage = float(covered.mean()) if k else math.nan
    pulls = residual / errors
    return {"bias": float(residual.mean()), "bias_error": float(residual.std(ddof=1) / math.sqrt(k)) if k > 1 else math.nan,
            "resolution": float(residual.std(ddof=1)) if k > 1 else math.nan, "mean_error": float(errors.mean()),
            "coverage": coverage, "coverage_error": math.sqrt(coverage * (1 - coverage) / k) if k else math.nan,
            "pull_mean": float(pulls.mean()), "pull_std": float(pulls.std(ddof=1)) if k > 1 else math.nan,
            "samples": k}  # fmt: skip


def calibration_with_sandwich(
    truth: np.ndarray, values: np.ndarray, errors: np.ndarray, sandwich_errors: np.ndarray
) -> dict[str, Any]:
    """:func:`calibration` with the Laplace ``errors``, and under ``"sandwich"`` with the sandwich ones."""
    return calibration(truth, values, errors) | {"sandwich": calibration(truth, values, sandwich_errors)}


def pseudo_experiments(
    model: Likelihood,
    showers: np.ndarray,
    conditions: np.ndarray,
    free: Sequence[str],
    bounds: dict[str, tuple[float, float]],
    sample_size: int,
    progress: bool = False,
    **fit_options: Any,
) -> PseudoExperiments:
    """Split showers made at known conditions into samples of ``sample_size`` and fit each.

    Every sample must have one value of each free condition (simulate each configuration
    apart, then concatenate); the true value is that one.
    """
    columns = _free_columns(model, free)
    k = len(showers) // sample_size
    if k < 1:
        raise ValueError(f"{len(showers)} showers make no sample of {sample_size}")
    truth, values, errors, sandwich_errors, converged = [], [], [], [], []
    from tqdm.auto import tqdm

    for i in tqdm(range(k), desc="pseudo-experiments", disable=not progress):
        part = slice(i * sample_size, (i + 1) * sample_size)
        true = conditions[part][:, columns]
        if np.ptp(true, axis=0).max() > 1e-6 * max(1.0, float(np.abs(true).max())):
            raise ValueError(f"sample {i} (showers {part.start}-{part.stop}) mixes values of {list(free)}; "
                             "each sample needs one configuration")  # fmt: skip
        fit = fit_conditions(model, showers[part], conditions[part], free, bounds, **fit_options)
        truth.append(true[0])
        values.append(fit.values)
        errors.append(fit.errors)
        sandwich_errors.append(fit.sandwich_errors)
        converged.append(fit.converged)
    result = PseudoExperiments(tuple(free), np.array(truth, dtype=float), np.array(values), np.array(errors),
                               np.array(sandwich_errors), np.array(converged))  # fmt: skip
    ok = result.converged
    result.summary = {
        name: calibration_with_sandwich(
            result.truth[ok, j], result.values[ok, j], result.errors[ok, j], result.sandwich_errors[ok, j]
        )
        for j, name in enumerate(free)
    }
    return result


def infer_from_file(
    model: Any,
    path: str,
    free: Sequence[str],
    sample_size: int | None = None,
    max_showers: int | None = None,
    progress: bool = False,
    **fit_options: Any,
) -> dict[str, Any]:
    """Fit the ``free`` conditions of the showers in a CaloChallenge file through ``model``.

    The model's other conditions are read per shower from the file (the incident energy at
    least). Without ``sample_size`` the whole file is one sample; with it, the file is cut into
    samples of that size and each is fitted; where the file also holds the free conditions (a
    simulation with each configuration held fixed over its samples), they are the truth of
    pseudo-experiments, and the result says how well the estimates are calibrated. The bounds
    are the model's training range.
    """
    import h5py

    from calosurrogate.data import read_showers

    columns = _free_columns(model, free)
    with h5py.File(path, "r") as f:
        present = set(f.keys())
    known = [name for name in model.condition_names[1:] if name not in free]
    absent = [name for name in known if name not in present]
    if absent:
        raise ValueError(f"{path}: no dataset {absent}; the model needs these conditions per shower")
    truth_known = all(name in present for name in free)
    names = [name for name in model.condition_names[1:] if name in present]
    batch = read_showers(path, model.geometry, max_showers=max_showers, conditions=names)
    conditions = np.zeros((len(batch), len(model.condition_names)))
    conditions[:, 0] = batch.incident_energies.reshape(-1)
    for name in names:
        conditions[:, model.condition_names.index(name)] = batch.conditions[name].reshape(-1)
    if model.condition_range is None:
        raise ValueError("the model carries no training range of its conditions (saved before it was recorded)")
    low, high = model.condition_range
    bounds = {name: (low[j], high[j]) for name, j in zip(free, columns, strict=True)}
    record: dict[str, Any] = {"file": str(path), "free": list(free), "bounds": bounds, "showers": len(batch)}
    if sample_size is None:
        record["fit"] = fit_conditions(model, batch.showers, conditions, free, bounds, **fit_options).as_dict()
        if truth_known:
            record["truth_mean"] = {name: float(conditions[:, j].mean()) for name, j in zip(free, columns, strict=True)}
        return record
    if truth_known:
        result = pseudo_experiments(
            model, batch.showers, conditions, free, bounds, sample_size, progress, **fit_options
        )
        record["pseudo_experiments"] = result.as_dict()
        return record
    k = len(batch) // sample_size
    if k < 1:
        raise ValueError(f"{path}: {len(batch)} showers make no sample of {sample_size}")
    record["fits"] = [fit_conditions(model, batch.showers[i * sample_size : (i + 1) * sample_size],
                                     conditions[i * sample_size : (i + 1) * sample_size], free, bounds,
                                     **fit_options).as_dict() for i in range(k)]  # fmt: skip
    return record
