"""How uncertain the clean shower is given a noisy one: what lets an ancestral sampler take large steps.

DDPM's ancestral step from ``sigma`` to ``sigma_next`` draws the next level as if the denoised
estimate ``D(x, sigma)`` were the clean shower itself. The clean shower given ``x`` has a spread,
``Var[x0 | x]``, and the next level given ``x`` has the variance
``sigma_up^2 + (1 - sigma_next^2 / sigma^2)^2 Var[x0 | x]``; the first term alone makes few-step
samples too smooth (on a Gaussian, 32 steps give a spread 15% too narrow, and on ds2 radial widths
the classifier reads). Analytic-DPM (Bao, Li, Zhu and Zhang, arXiv:2201.06503) shows that the best
data-independent Gaussian step uses ``Var[x0 | x]`` averaged over the data, and that a trained
model yields it without retraining: a denoiser's mean squared error at ``sigma`` is that average
(plus the network's own error). The average is kept per code dimension (voxel): measured once
on training showers after training, it is what the ``analytic-ddpm`` sampler draws with; the
network is unchanged. (Kept per bin of incident energy as well, it sampled worse on ds2: see
BENCHMARKS.md, "Few-step samplers".)

Shapes: the table is ``(levels K, dimensions D)``; noise levels ``sigma`` are in the sampler's
(variance-exploding) coordinates.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate.models.diffusion.samplers import sigma_levels


class PosteriorVariance(nn.Module):
    """``Var[x0 | x_sigma]`` averaged over the data, per noise level and dimension (see module docstring).

    Args:
        n_dims: Dimensions of the codes the sampler integrates (voxels).
        sigma_min, sigma_max: The sampler's noise range; the table holds ``n_levels`` levels of
            EDM's schedule between them and is interpolated in ``log`` variance against ``log sigma``.
        n_levels: Noise levels measured.
    """

    def __init__(self, n_dims: int, sigma_min: float, sigma_max: float, n_levels: int = 32) -> None:
        super().__init__()
        levels = sigma_levels(n_levels, sigma_min, sigma_max)[:-1][::-1]  # increasing
        self.register_buffer("log_sigma", torch.tensor(np.log(levels), dtype=torch.float64))
        self.register_buffer("table", torch.zeros(n_levels, n_dims))
        self.register_buffer("calibrated", torch.tensor(False))

    @torch.no_grad()
    def fit(
        self,
        denoiser: Callable[[Tensor], Callable[[Tensor, Tensor], Tensor]],
        codes: Tensor,
        context: Tensor,
        batch_size: int = 2_000,
        seed: int = 0,
    ) -> PosteriorVariance:
        """Measure the table: at every level, the mean squared error per dimension of the denoised
        estimate of ``codes`` ``(N, D)`` noised to that level.

        Args:
            denoiser: ``context (n, C) -> D(x, sigma)`` for those showers' context rows.
            codes: Clean codes ``(N, D)`` of training showers.
            context: What the denoiser is conditioned on ``(N, C)``.
        """
        generator = torch.Generator(device=codes.device).manual_seed(seed)
        table = torch.zeros_like(self.table)
        for k, log_sigma in enumerate(self.log_sigma.tolist()):
            sigma = float(np.exp(log_sigma))
            for lo in range(0, len(codes), batch_size):
                x0 = codes[lo : lo + batch_size].float()
                noise = torch.randn(x0.shape, generator=generator, device=x0.device)
                levels = torch.full((len(x0),), sigma, device=x0.device)
                error = denoiser(context[lo : lo + batch_size])(x0 + sigma * noise, levels).float() - x0
                table[k] += error.square().sum(0)
        self.table.copy_(table / max(len(codes), 1))
        self.calibrated.fill_(True)
        return self

    def forward(self, sigma: float) -> Tensor:
        """``v(sigma)`` ``(D,)``, interpolated in log variance against log sigma: exact for power laws,
        which it follows at both ends (``sigma^2`` at low noise for a continuous dimension, constant
        at high noise), where the variance changes by decades between measured levels."""
        log_sigma = self.log_sigma.tolist()
        k = float(np.interp(np.log(sigma), log_sigma, np.arange(len(log_sigma))))
        lo = int(k)
        hi = min(lo + 1, len(log_sigma) - 1)
        log_table = self.table[[lo, hi]].clamp_min(1e-30).log()
        return torch.lerp(log_table[0], log_table[1], k - lo).exp()


__all__ = ["PosteriorVariance"]
