"""Conditional Wasserstein GAN with gradient penalty (WGAN-GP) surrogate.

Gulrajani et al., "Improved training of Wasserstein GANs", arXiv:1704.00028: a critic ``D``
estimates the Wasserstein-1 distance between real and generated showers under a soft
1-Lipschitz constraint (the gradient penalty on random interpolates), and the generator ``G``
lowers it. Both see the conditions, as in the CaloChallenge GANs (BoloGAN / FastCaloGAN,
arXiv:2207.09822; CaloShowerGAN). Sampling is one generator pass: the fastest family here.

Showers are seen in ``log(1 + E / cut)`` codes standardised per voxel (empty voxels sit at a
fixed code), the generator outputs codes, and the sampling cut restores exact zeros.

With ``critic_energies`` the critic also sees each shower's layer energies and total energy
over the incident energy, computed from the (decoded) codes: a total that is a few per cent
off is a tiny change spread over hundreds of voxel codes but a clear shift in one feature, and
the calorimeter response is where a classifier first separates GAN showers (BoloGAN and
CaloShowerGAN give their discriminators the same energy features).

Training differs from the other families only in :meth:`WassersteinGAN.training_step`: a
critic step on every batch and a generator step on every ``n_critic``-th; Adam with
``betas = (0.5, 0.9)`` as in the paper. The log gains the gradient penalty and
``train_spread_ratio``, the batch spread of generated over real codes averaged over voxels: a
value falling towards 0 is the signature of mode collapse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from calosurrogate.data.transforms import Standardize
from calosurrogate.models.base import Surrogate, UpdateFn, register
from calosurrogate.models.components import LayerDecomposition, LogEnergyCoding, mlp


@dataclass
class WGANConfig:
    """Settings of the WGAN-GP family.

    Attributes:
        latent: Noise dimension of the generator.
        hidden, layers: Generator MLP size.
        critic_hidden, critic_layers: Critic MLP size.
        n_critic: Critic steps per generator step.
        gp_weight: Weight ``lambda`` of the gradient penalty.
        spectral_norm: Spectral normalisation of the critic's linear maps.
        critic_energies: Also give the critic ``log(E_layer / E_inc)`` per layer and
            ``E_tot / E_inc``, standardised (see module docstring).
        adam_beta1, adam_beta2: Adam's betas for both networks.
        energy_cut_mev: Sampling cut (None: the dataset's threshold).
        seed: Seed of the initial weights.
    """

    latent: int = 64
    hidden: int = 512
    layers: int = 3
    critic_hidden: int = 512
    critic_layers: int = 3
    n_critic: int = 5
    gp_weight: float = 10.0
    spectral_norm: bool = False
    critic_energies: bool = True
    adam_beta1: float = 0.5
    adam_beta2: float = 0.9
    energy_cut_mev: float | None = None
    seed: int = 0


@register("wgan")
class WassersteinGAN(Surrogate):
    """Conditional WGAN-GP (see module docstring)."""

    # The generator's gap coding ignores sub-cut energies; the GAN keeps noise of the cut's width.
    max_training_noise_mev = float("inf")
    config_class = WGANConfig
    adversarial = True

    def __init__(self, config: WGANConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        k, v = len(condition_names), geometry.n_voxels
        self.conditions_map = self.new_condition_map()
        self.coding = LogEnergyCoding(v, float(self.cut))
        self.generator = mlp(config.latent + k, v, config.hidden, config.layers)
        n_energy_features = geometry.n_layers + 1 if config.critic_energies else 0
        if config.critic_energies:
            self.decomposition = LayerDecomposition(geometry.layer_offsets.tolist())
            self.energy_scaler = Standardize(n_energy_features)
        self.critic = mlp(
            v + k + n_energy_features,
            1,
            config.critic_hidden,
            config.critic_layers,
            spectral_norm=config.spectral_norm,
            final_bias=False,
        )
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long))  # decides generator steps; resumes exactly

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        self.coding.fit(showers, conditions[:, :1])
        if self.config.critic_energies:
            self.energy_scaler.fit(self._energy_features(showers, conditions[:, :1]))
        self._fitted.fill_(True)

    def _energy_features(self, showers: Tensor, incident: Tensor) -> Tensor:
        """``(N, V)`` MeV -> ``(N, L + 1)``: log layer-energy fractions and the total fraction."""
        fractions = self.decomposition.layer_energies(showers.float()) / incident.float().reshape(-1, 1)
        return torch.cat([torch.log(fractions + 1e-6), fractions.sum(1, keepdim=True)], dim=1)

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        betas = {"betas": (self.config.adam_beta1, self.config.adam_beta2)}
        return {
            "critic": (list(self.critic.parameters()), betas),
            "generator": (list(self.generator.parameters()), betas),
        }

    def _generate(self, cond: Tensor, noise: Tensor | None = None) -> Tensor:
        if noise is None:
            noise = torch.randn(len(cond), self.config.latent, device=cond.device)
        return self.generator(torch.cat([noise, cond.to(noise.dtype)], dim=1)).float()

    def _critic(self, codes: Tensor, cond: Tensor, incident: Tensor) -> Tensor:
        inputs = [codes, cond.to(codes.dtype)]
        if self.config.critic_energies:
            features = self._energy_features(self.coding.inverse(codes, incident), incident)
            inputs.append(self.energy_scaler(features).to(codes.dtype))
        return self.critic(torch.cat(inputs, dim=1)).float().squeeze(1)

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Per-shower critic estimate of the Wasserstein distance, ``D(real) - D(G(z))``, ``(N,)``.

        Used for validation and model selection: lower means the critic tells real from
        generated showers less well. Gradients reach both networks.
        """
        cond, incident = self.conditions_map(conditions), conditions[:, :1]
        real = self.coding(showers, incident)
        return self._critic(real, cond, incident) - self._critic(self._generate(cond), cond, incident)

    def _gradient_penalty(self, real: Tensor, fake: Tensor, cond: Tensor, incident: Tensor) -> Tensor:
        mix = torch.rand(len(real), 1, device=real.device)
        between = (mix * real + (1 - mix) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self._critic(between, cond, incident).sum(), between, create_graph=True)
        return ((grad.float().norm(dim=1) - 1.0) ** 2).mean()

    def training_step(self, showers: Tensor, conditions: Tensor, update: UpdateFn) -> dict[str, Tensor]:
        cond, incident = self.conditions_map(conditions), conditions[:, :1]
        real = self.coding(showers, incident)
        fake = self._generate(cond).detach()
        wasserstein = self._critic(real, cond, incident).mean() - self._critic(fake, cond, incident).mean()
        penalty = self._gradient_penalty(real, fake, cond, incident)
        update("critic", -wasserstein + self.config.gp_weight * penalty)
        logged = {
            "loss": wasserstein.detach(),
            "gradient_penalty": penalty.detach(),
            "spread_ratio": (fake.std(0) / real.std(0).clamp_min(1e-6)).mean().detach(),
        }
        self.steps += 1
        if int(self.steps) % self.config.n_critic == 0:
            update("generator", -self._critic(self._generate(cond), cond, incident).mean())
        return logged

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        return (torch.randn(len(conditions), self.config.latent, device=conditions.device),)

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        codes = self._generate(self.conditions_map(conditions), noise[0])
        return self.coding.inverse(codes, conditions[:, :1])


__all__ = ["WGANConfig", "WassersteinGAN"]
