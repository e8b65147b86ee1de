"""Samplers of diffusion and flow-matching models, separate from any network.

Every objective of :mod:`~calosurrogate.models.diffusion` is turned into one object, a
*denoiser* ``D(x, sigma)``: the model's estimate of the clean sample given ``x = x0 + sigma n``
(Karras, Aittala, Aila and Laine, "Elucidating the design space of diffusion-based generative
models" (EDM), arXiv:2206.00364, section 2: DDPM / variance-preserving models, v-prediction and
the linear flow-matching path are all this variance-exploding form after rescaling ``x``). The
samplers below integrate from ``sigma_max`` to 0 using only ``D``; the number of steps is chosen
at sampling time.

- ``euler``: first-order probability-flow ODE; in these coordinates it *is* DDIM (eta = 0,
  Song, Meng and Ermon, arXiv:2010.02502) and the Euler flow-matching sampler.
- ``heun``: EDM's second-order Heun sampler (last step Euler), two network calls per step.
- ``rk4``: classical Runge-Kutta on the ODE, four calls per step (as used for flow matching).
- ``dpm2m``: DPM-Solver++(2M), second order from one call per step by reusing the previous
  denoised estimate (Lu et al., arXiv:2211.01095).
- ``ddpm``: ancestral sampling, stochastic: each step denoises to the next level and adds back
  fresh noise (Ho, Jain and Abbeel, arXiv:2006.11239, in EDM's form).
- ``dpm2m-sde``: DPM-Solver++(2M) for the diffusion SDE (Lu et al., arXiv:2211.01095, section 5):
  the same fresh noise and first-order part as ``ddpm`` (they are equal step for step) plus a
  second-order correction from the previous denoised estimate, one call per step.
- ``analytic-ddpm``: ``ddpm`` whose fresh noise also carries the spread of the clean sample given
  the current one (Analytic-DPM, Bao et al., arXiv:2201.06503; see
  :mod:`~calosurrogate.models.diffusion.variance`): needs ``posterior_variance``.

Noise levels follow EDM's schedule ``sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) -
s_max^(1/rho)))^rho`` with ``rho = 7``, then 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``D(x, sigma)``: ``x (N, D)``, ``sigma (N,)`` -> denoised ``(N, D)``."""

SAMPLERS = ("euler", "heun", "rk4", "dpm2m", "ddpm", "dpm2m-sde", "analytic-ddpm")
CALLS_PER_STEP = {"euler": 1, "heun": 2, "rk4": 4, "dpm2m": 1, "ddpm": 1, "dpm2m-sde": 1, "analytic-ddpm": 1}
STOCHASTIC = ("ddpm", "dpm2m-sde", "analytic-ddpm")
"""Samplers that add fresh noise at every step but the last (``ancestral_noise``)."""


def sigma_levels(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """``steps`` decreasing noise levels from ``sigma_max`` to ``sigma_min``, then a final 0
    (``steps + 1`` Python floats: no tensor, so traced and exported graphs hold constants)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps == 1:
        return [float(sigma_max), 0.0]
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return [(hi + i / (steps - 1) * (lo - hi)) ** rho for i in range(steps)] + [0.0]


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """:func:`sigma_levels` as a float64 tensor."""
    return torch.tensor(sigma_levels(steps, sigma_min, sigma_max, rho), dtype=torch.float64)


_compile_failure: str | None = None  # why torch.compile failed in this process: it is not tried again


def compiled(function: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``function`` (a denoiser, a sampler's update) through ``torch.compile``: element-wise work
    fused, the same values up to rounding.

    Compiled code is cached by the function's code, so a denoiser made anew for each batch
    compiles once per batch shape. Where compilation fails (no C++ compiler, an unsupported
    operation) the eager function runs instead, with one warning per process.
    """
    fast = torch.compile(function)

    def run(*args: Tensor) -> Tensor:
        global _compile_failure
        if _compile_failure is None:
            try:
                return fast(*args)
            except Exception as err:  # any failure of the compiler: run eagerly (a real error recurs there)
                _compile_failure = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                warnings.warn(f"torch.compile failed, sampling eagerly ({_compile_failure})", stacklevel=2)
        return function(*args)

    return run


def _ancestral_update(x: Tensor, denoised: Tensor, fresh: Tensor, drift: Tensor, spread: Tensor) -> Tensor:
    """``x + drift (x - denoised) + spread fresh``: an ancestral step's move and fresh noise in one
    pass over the samples (``drift``, ``spread``: tensors, so that compiled code serves every step)."""
    return x + drift * (x - denoised) + spread * fresh


_compiled_update: Callable[..., Tensor] | None = None


def _call(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    return denoiser(x, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)).to(x.dtype)


def _slope(denoiser: Denoiser, x: Tensor, sigma: float) -> Tensor:
    """``dx/dsigma = (x - D(x, sigma)) / sigma`` of the probability-flow ODE."""
    return (x - _call(denoiser, x, sigma)) / sigma


def sample(
    denoiser: Denoiser,
    noise: Tensor,
    steps: int,
    sampler: str = "heun",
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    ancestral_noise: Tensor | None = None,
    posterior_variance: Callable[[float], Tensor] | None = None,
    compile: bool = False,
) -> Tensor:
    """Integrate from ``x = sigma_max * noise`` to a clean sample.

    Args:
        denoiser: ``D(x, sigma)`` (see module docstring).
        noise: Standard normal ``(N, D)`` starting noise.
        steps: Number of noise levels (network calls: ``steps x CALLS_PER_STEP``, fewer for the last Heun step).
        sampler: One of ``SAMPLERS``.
        sigma_min, sigma_max, rho: The noise schedule.
        ancestral_noise: For the ``STOCHASTIC`` samplers, the fresh noise of each step ``(steps, N, D)``
            (drawn if None).
        posterior_variance: For ``analytic-ddpm``, ``v(sigma)``: the variance of the clean sample
            given ``x`` at ``sigma``, averaged over the data, ``(D,)`` or ``(N, D)``. Each step then
            draws the variance of the next level given this one,
            ``sigma_up^2 + (1 - sigma_next^2 / sigma^2)^2 v(sigma)``, where ``ddpm`` draws
            ``sigma_up^2`` alone, as if the denoised estimate were exact (the optimal Gaussian
            step of Analytic-DPM, Bao et al., arXiv:2201.06503; exact for Gaussian data).
        compile: Run the denoiser, and the stochastic samplers' update, through :func:`compiled`.

    Returns:
        Samples ``(N, D)``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; use one of {SAMPLERS}")
    if (sampler == "analytic-ddpm") != (posterior_variance is not None):
        raise ValueError("posterior_variance is what the analytic-ddpm sampler, and only it, needs")
    global _compiled_update
    update = _ancestral_update
    if compile:
        denoiser = compiled(denoiser)
        _compiled_update = _compiled_update or compiled(_ancestral_update)
        update = _compiled_update
    sigmas = sigma_levels(steps, sigma_min, sigma_max, rho)
    x = noise * sigmas[0]
    previous_denoised: Tensor | None = None
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        if sampler == "euler" or (sampler == "heun" and s_next == 0):
            x = x + (s_next - s) * _slope(denoiser, x, s)
        elif sampler == "heun":
            d = _slope(denoiser, x, s)
            x_euler = x + (s_next - s) * d
            x = x + (s_next - s) * 0.5 * (d + _slope(denoiser, x_euler, s_next))
        elif sampler == "rk4":
            h = s_next - s
            if s_next == 0:  # the slope is undefined at sigma = 0: finish with a denoising step
                x = _call(denoiser, x, s)
                continue
            k1 = _slope(denoiser, x, s)
            k2 = _slope(denoiser, x + 0.5 * h * k1, s + 0.5 * h)
            k3 = _slope(denoiser, x + 0.5 * h * k2, s + 0.5 * h)
            k4 = _slope(denoiser, x + h * k3, s_next)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        elif sampler == "dpm2m":
            denoised = _call(denoiser, x, s)
            if s_next == 0:
                x = denoised
                continue
            t, t_next = -math.log(s), -math.log(s_next)
            h = t_next - t
            if previous_denoised is None:
                estimate = denoised
            else:
                h_last = t - (-math.log(sigmas[i - 1]))
                r = h_last / h
                estimate = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * previous_denoised
            x = (s_next / s) * x - math.expm1(-h) * estimate
            previous_denoised = denoised
        else:  # ancestral (EDM form): a deterministic move to sigma_down, then fresh noise of sigma_up
            denoised = _call(denoiser, x, s)
            if s_next == 0:
                x = denoised
                continue
            sigma_up = math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0))
            sigma_down = math.sqrt(max(s_next**2 - sigma_up**2, 0.0))
            target = denoised
            if sampler == "dpm2m-sde" and previous_denoised is not None:
                # In log-sigma time h the first-order SDE step weighs the denoised estimate by
                # 1 - exp(-2h) = 1 - sigma_down / s; the midpoint correction adds half of that
                # times the estimate's change per step, scaled by h / h_last: the same move
                # towards an estimate extrapolated by that share of the change.
                h, h_last = math.log(s / s_next), math.log(sigmas[i - 1] / s)
                target = denoised + 0.5 * (h / h_last) * (denoised - previous_denoised)
            previous_denoised = denoised
            fresh = torch.randn_like(x) if ancestral_noise is None else ancestral_noise[i].to(x)
            spread = torch.tensor(sigma_up**2, dtype=x.dtype, device=x.device)
            if posterior_variance is not None:
                spread = spread + (1 - sigma_down / s) ** 2 * posterior_variance(s).to(x)
            drift = torch.tensor((sigma_down - s) / s, dtype=x.dtype, device=x.device)
            x = update(x, target, fresh, drift, spread.sqrt())
    return x


def network_calls(steps: int, sampler: str) -> int:
    """Network evaluations one sample costs."""
    calls = steps * CALLS_PER_STEP[sampler]
    if sampler == "heun":
        calls -= 1  # the last step is Euler
    if sampler == "rk4":
        calls -= 3  # the last step is one denoising call
    return calls


__all__ = [
    "CALLS_PER_STEP",
    "SAMPLERS",
    "STOCHASTIC",
    "Denoiser",
    "karras_sigmas",
    "network_calls",
    "sample",
    "sigma_levels",
]
