"""Training objectives of the diffusion family: each owns its loss and its denoiser.

After diffusers' split of schedulers and models: a backbone ``F(x, noise level, conditions)``
(:mod:`.backbones`) knows no noise schedule. An objective draws the noise levels of training and
gives the per-shower loss, and turns the backbone into the denoiser ``D(x, sigma)`` in EDM's
variance-exploding coordinates (``x = x0 + sigma n``), which every sampler (:mod:`.samplers`)
integrates (Karras et al., arXiv:2206.00364, section 2: DDPM, v-prediction and the linear
flow-matching path are this form after rescaling ``x``). Codes are ``(N, V)``, standardised.

- :class:`EDM`: EDM's preconditioning and log-normal noise levels (arXiv:2206.00364).
- :class:`SpikeSlabEDM`: EDM whose denoiser is the exact posterior mean of a per-voxel
  spike-and-slab prior that the network predicts (empty voxel or a Gaussian hit).
- :class:`CosineDDPM`: noise prediction on the cosine schedule (Nichol and Dhariwal, arXiv:2102.09672).
- :class:`VPrediction`: v-prediction on the same schedule (Salimans and Ho, arXiv:2202.00512).
- :class:`FlowMatching`: the linear path from data to noise (Lipman et al., arXiv:2210.02747).

A new objective is one subclass here and one entry of :data:`OBJECTIVES`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

COSINE_OFFSET = 0.008  # s of the cosine schedule (Nichol and Dhariwal)


def alpha_bar(t: Tensor) -> Tensor:
    """Cosine schedule ``alpha_bar(t)``, t in [0, 1]."""
    return torch.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2


def t_of_alpha_bar(alpha: Tensor) -> Tensor:
    """The inverse of :func:`alpha_bar`."""
    return (torch.acos(alpha.clamp(0, 1).sqrt()) * 2 / math.pi * (1 + COSINE_OFFSET) - COSINE_OFFSET).clamp(0, 1)


def spike_slab_posterior_mean(noisy: Tensor, sigma: Tensor, spike: Tensor, prior: Tensor) -> Tensor:
    """Posterior mean of ``x0`` given ``x = x0 + sigma * eps`` under a spike-and-slab prior per voxel.

    The prior of each voxel's clean code is a point mass at ``spike`` (the code of an empty
    voxel) with weight ``sigmoid(logit)``, else a Gaussian ``N(mean, width^2)`` (the voxel's
    hits). The posterior mean is exact: ``w * spike + (1 - w) * (mean sigma^2 + x width^2) /
    (width^2 + sigma^2)``, ``w`` the posterior weight of the spike. A network that predicts the
    prior from the whole noisy shower then denoises with the right nonlinearity in each voxel's
    own value: at low noise an almost-empty voxel snaps to the empty code and a hit keeps its
    value, which a network narrower than the shower cannot learn for every voxel on its own.

    Args:
        noisy: Noisy codes ``x``, ``(N, V)``.
        sigma: Noise level per shower, ``(N,)``.
        spike: Code of an empty voxel, ``(V,)``.
        prior: ``(N, V, 3)``: logit of the spike weight, slab mean, and ``w`` with slab width
            ``softplus(w) + 1e-3``.

    Returns:
        Denoised codes ``(N, V)``, float32.
    """
    logit, mean, raw_width = prior.float().unbind(-1)
    x, s2 = noisy.float(), sigma.float().reshape(-1, 1) ** 2
    slab_var = (F.softplus(raw_width) + 1e-3) ** 2
    total_var = slab_var + s2
    # log N(x; spike, sigma^2) - log N(x; mean, width^2 + sigma^2)
    log_ratio = 0.5 * ((x - mean) ** 2 / total_var - (x - spike) ** 2 / s2 + torch.log(total_var / s2))
    weight = torch.sigmoid(logit + log_ratio)
    return weight * spike + (1 - weight) * (mean * s2 + x * slab_var) / total_var


class Objective(ABC):
    """What a backbone is trained to predict, and how its prediction becomes a denoiser."""

    outputs_per_voxel: ClassVar[int] = 1  # what the backbone returns per voxel

    @classmethod
    def build(cls, settings: Any, coding: Any) -> Objective:
        """The objective for ``settings`` (an :class:`~.config.ObjectiveConfig`) and the family's voxel coding."""
        return cls()

    @abstractmethod
    def loss(self, net: nn.Module, x0: Tensor, noise: Tensor, cond: Tensor) -> Tensor:
        """Per-shower loss ``(N,)`` of ``net`` on clean codes ``x0`` with standard normal ``noise``
        (same shape) and mapped conditions ``cond`` ``(N, K)``; draws its own noise levels."""

    @abstractmethod
    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        """``D(x, sigma)``: the estimate of ``x0`` from ``x = x0 + sigma n``, ``sigma`` ``(N,)`` float32."""


class EDM(Objective):
    """EDM (arXiv:2206.00364): ``D = c_skip x + c_out F(c_in x, ln(sigma) / 4)``, trained at
    ``ln sigma ~ N(p_mean, p_std^2)`` with the weight ``1 / c_out^2``."""

    def __init__(self, sigma_data: float = 1.0, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std

    @classmethod
    def build(cls, settings: Any, coding: Any) -> Objective:
        return cls(settings.sigma_data, settings.p_mean, settings.p_std)

    def loss(self, net: nn.Module, x0: Tensor, noise: Tensor, cond: Tensor) -> Tensor:
        sigma = torch.exp(self.p_mean + self.p_std * torch.randn(x0.shape[0], device=x0.device))
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        denoised = self.denoise(net, x0 + sigma[:, None] * noise, sigma, cond)
        return weight * ((denoised - x0) ** 2).mean(1)

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        sd, s = self.sigma_data, sigma[:, None]
        output = net(x / (s**2 + sd**2).sqrt(), torch.log(sigma) / 4, cond)  # c_in x
        return self._combine(x, sigma, output)

    def _combine(self, x: Tensor, sigma: Tensor, output: Tensor) -> Tensor:
        sd, s = self.sigma_data, sigma[:, None]
        return sd**2 / (s**2 + sd**2) * x + s * sd / (s**2 + sd**2).sqrt() * output


class SpikeSlabEDM(EDM):
    """EDM whose denoiser is :func:`spike_slab_posterior_mean` of the prior the backbone predicts
    (``(N, V, 3)``): empty voxels snap to the empty code at low noise instead of ending as faint
    hits or as dimmed real ones.

    Args:
        empty_code: Returns the code of an empty voxel ``(V,)`` (it depends on the fitted coding).
    """

    outputs_per_voxel = 3

    def __init__(self, empty_code: Callable[[], Tensor], **edm: float) -> None:
        super().__init__(**edm)
        self.empty_code = empty_code

    @classmethod
    def build(cls, settings: Any, coding: Any) -> Objective:
        return cls(coding.empty_code, sigma_data=settings.sigma_data, p_mean=settings.p_mean, p_std=settings.p_std)

    def _combine(self, x: Tensor, sigma: Tensor, output: Tensor) -> Tensor:
        return spike_slab_posterior_mean(x, sigma, self.empty_code(), output)


class CosineDDPM(Objective):
    """Noise prediction on the cosine schedule: ``x_t = sqrt(a) x0 + sqrt(1 - a) n``, ``a = alpha_bar(t)``,
    ``t ~ U(0, 1)``; in EDM's coordinates ``x = x_t / sqrt(a)``, ``sigma^2 = (1 - a) / a``."""

    def target(self, x0: Tensor, noise: Tensor, a: Tensor) -> Tensor:
        return noise

    def estimate(self, x: Tensor, x_t: Tensor, sigma: Tensor, a: Tensor, output: Tensor) -> Tensor:
        return x - sigma[:, None] * output

    def loss(self, net: nn.Module, x0: Tensor, noise: Tensor, cond: Tensor) -> Tensor:
        t = torch.rand(x0.shape[0], device=x0.device)
        t = t.clamp(1e-4, 0.9999)  # alpha_bar(1) = 0 would make x_t pure noise with no signal to predict
        a = alpha_bar(t)[:, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        return ((net(x_t, t, cond) - self.target(x0, noise, a)) ** 2).mean(1)

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        a = 1 / (1 + sigma**2)
        x_t = x * a.sqrt()[:, None]
        return self.estimate(x, x_t, sigma, a, net(x_t, t_of_alpha_bar(a), cond))


class VPrediction(CosineDDPM):
    """v-prediction, ``v = sqrt(a) n - sqrt(1 - a) x0``, on the cosine schedule."""

    def target(self, x0: Tensor, noise: Tensor, a: Tensor) -> Tensor:
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def estimate(self, x: Tensor, x_t: Tensor, sigma: Tensor, a: Tensor, output: Tensor) -> Tensor:
        return a.sqrt()[:, None] * x_t - (1 - a).sqrt()[:, None] * output


class FlowMatching(Objective):
    """The linear path ``x_t = (1 - t) x0 + t n``, ``t ~ U(0, 1)``, the backbone predicting the
    velocity ``n - x0``; in EDM's coordinates ``sigma = t / (1 - t)``."""

    def loss(self, net: nn.Module, x0: Tensor, noise: Tensor, cond: Tensor) -> Tensor:
        t = torch.rand(x0.shape[0], device=x0.device)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * noise
        return ((net(x_t, t, cond) - (noise - x0)) ** 2).mean(1)

    def denoise(self, net: nn.Module, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        t = sigma / (1 + sigma)
        x_t = x / (1 + sigma[:, None])
        return x_t - t[:, None] * net(x_t, t, cond)


OBJECTIVES: dict[str, type[Objective]] = {
    "edm": EDM,
    "spike-slab": SpikeSlabEDM,
    "ddpm": CosineDDPM,
    "v": VPrediction,
    "flow-matching": FlowMatching,
}
