"""Conditional variational autoencoder (VAE) surrogate.

Kingma and Welling, "Auto-encoding variational Bayes", arXiv:1312.6114, conditioned on the
incident energy (and any further conditions) in encoder, decoder and prior, with the
beta-weighted KL term of Higgins et al. (beta-VAE, ICLR 2017). Sampling is one decoder pass,
which makes VAEs among the fastest surrogates of the CaloChallenge table.

Choices for calorimeter showers:

- Reconstruction ``"hurdle"`` (default): the decoder gives, per voxel, the probability of a hit
  and a Gaussian on the hit's log energy (:class:`~calosurrogate.models.components.HurdleLikelihood`),
  so sparsity is learned explicitly and sampled showers are sparse; ``"mse"``: a unit Gaussian on
  ``log(1 + E / cut)`` codes, sampled as the decoder mean.
- Prior ``"normal"``: a standard normal; ``"flow"``: a conditional coupling flow trained jointly,
  so that latents need not be Gaussian (after CaloVAE+INN, which fits an INN on the latent space,
  CaloChallenge 2022 submission; see arXiv:2410.21611).
- Architecture ``"mlp"`` for any geometry; ``"conv"`` (cylindrical convolutions, circular in
  alpha) for regular geometries (datasets 2 and 3).
- ``layer_energies``: generate in two stages, as CaloFlow (Krause and Shih, arXiv:2106.05285)
  and CaloINN (Ernst et al., arXiv:2312.09290) do: a flow draws the layer energies
  (:class:`~calosurrogate.models.components.LayerEnergyStage`), the VAE, told them, draws the
  voxels, and each layer is rescaled to its drawn energy. A single decoder pass gets the total
  energy's spread wrong by a wide margin over 1 GeV - 1 TeV; the flow gets it right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from calosurrogate.models.base import ConfigError, Surrogate, register
from calosurrogate.models.components import (
    HurdleLikelihood,
    LayerEnergyStage,
    LogEnergyCoding,
    ShowerDecoder,
    ShowerEncoder,
    coupling_spline_flow,
    flow_from_noise,
    flow_log_prob,
)


@dataclass
class VAEConfig:
    """Settings of the VAE family.

    Attributes:
        latent: Latent dimension.
        hidden, layers: Width and number of hidden layers of the MLP encoder and decoder.
        architecture: ``"mlp"`` or ``"conv"`` (regular geometries only).
        conv_channels, conv_blocks: Size of the convolutional encoder/decoder.
        reconstruction: ``"hurdle"`` or ``"mse"`` (module docstring).
        beta: Weight of the KL term.
        prior: ``"normal"`` or ``"flow"``.
        prior_transforms, prior_hidden: Size of the flow prior.
        layer_energies: Two stages: a flow over the layer energies first (module docstring).
        occupancy: With ``layer_energies``, the stage first draws which layers hold energy.
        energy_cut_mev: Hit threshold and sampling cut (None: the dataset's threshold).
        seed: Seed of initial weights and fixed masks.
    """

    latent: int = 32
    hidden: int = 512
    layers: int = 2
    architecture: str = "mlp"
    conv_channels: int = 16
    conv_blocks: int = 2
    reconstruction: str = "hurdle"
    beta: float = 1.0
    prior: str = "normal"
    prior_transforms: int = 4
    prior_hidden: int = 128
    layer_energies: bool = False
    occupancy: bool = False
    energy_cut_mev: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("architecture", ("mlp", "conv")), ("reconstruction", ("hurdle", "mse")),
                              ("prior", ("normal", "flow"))):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ConfigError(f"vae: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.occupancy and not self.layer_energies:
            raise ConfigError("vae: occupancy is part of the layer-energy stage; set layer_energies too")


@register("vae")
class ConditionalVAE(Surrogate):
    """Conditional VAE (see module docstring)."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        k = len(condition_names)
        self.conditions_map = self.new_condition_map()
        hurdle = config.reconstruction == "hurdle"
        self.coding = LogEnergyCoding(geometry.n_voxels, float(self.cut), hits_only=hurdle)
        self.first_stage = None
        if config.layer_energies:
            offsets = geometry.layer_offsets.tolist()
            self.first_stage = LayerEnergyStage.with_coupling_flow(offsets, k, config.occupancy, config.seed)
            k += geometry.n_layers  # encoder, decoder and prior are told the layer energies
        self.likelihood = HurdleLikelihood(self.coding) if hurdle else None
        conv = (config.conv_channels, config.conv_blocks) if config.architecture == "conv" else None
        self.encoder = ShowerEncoder(geometry, k, 2 * config.latent, config.hidden, config.layers, conv)
        n_params = HurdleLikelihood.n_params if hurdle else 1
        self.decoder = ShowerDecoder(geometry, k, config.latent, n_params, config.hidden, config.layers, conv)
        self.prior_flow = (
            coupling_spline_flow(config.latent, k, config.prior_transforms, config.prior_hidden, 8, config.seed)
            if config.prior == "flow"
            else None
        )

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        self.coding.fit(showers, conditions[:, :1])
        if self.first_stage is not None:
            self.first_stage.fit_showers(self.apply_cut(showers), conditions[:, :1].float(), self.cut)
        self._fitted.fill_(True)

    def _reconstruction_log_prob(self, params: Tensor, showers: Tensor, incident: Tensor) -> Tensor:
        if self.likelihood is not None:
            return self.likelihood.log_prob(params, showers, incident)
        residual = params[..., 0] - self.coding(showers, incident)
        return -0.5 * (residual**2).sum(-1) - 0.5 * showers.shape[1] * math.log(2 * math.pi)

    def _prior_log_prob(self, latents: Tensor, cond: Tensor) -> Tensor:
        if self.prior_flow is None:
            return -0.5 * (latents**2).sum(-1) - 0.5 * latents.shape[1] * math.log(2 * math.pi)
        return flow_log_prob(self.prior_flow, latents, cond)

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Negative ELBO per voxel (beta-weighted KL; with two stages, plus the layer energies'
        negative log-likelihood), ``(N,)``."""
        cond = self.conditions_map(conditions)
        incident = conditions[:, :1]
        energy_nll = 0.0
        if self.first_stage is not None:
            cond, energy_nll = self.first_stage.conditioned(self.apply_cut(showers), incident.float(), cond, self.cut)
        mean, log_var = self.encoder(self.coding(showers, incident), cond).float().chunk(2, dim=1)
        log_var = log_var.clamp(-12.0, 8.0)
        latents = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        reconstruction = self._reconstruction_log_prob(self.decoder(latents, cond), showers, incident)
        if self.prior_flow is None:  # analytic KL to the standard normal
            kl = 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).sum(-1)
        else:  # one-sample estimate of KL(q(z|x) || p(z|c))
            log_q = -0.5 * (((latents - mean) ** 2) / log_var.exp() + log_var + math.log(2 * math.pi)).sum(-1)
            kl = log_q - self._prior_log_prob(latents, cond)
        return (self.config.beta * kl - reconstruction + energy_nll) / self.geometry.n_voxels

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        n, v, device = len(conditions), self.geometry.n_voxels, conditions.device
        noise = [torch.randn(n, self.config.latent, device=device)]
        if self.first_stage is not None:
            noise += self.first_stage.random_inputs(n, device)
        if self.likelihood is not None:
            noise += [torch.rand(n, v, device=device), torch.randn(n, v, device=device)]
        return tuple(noise)

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        cond = self.conditions_map(conditions)
        incident = conditions[:, :1]
        latent, *rest = noise
        if self.first_stage is not None:
            stage_inputs, rest = rest[: 1 + self.config.occupancy], rest[1 + self.config.occupancy :]
            cond, layer_energies = self.first_stage.drawn(cond, incident.float(), stage_inputs, self.cut)
        latents = latent if self.prior_flow is None else flow_from_noise(self.prior_flow, cond, latent)
        params = self.decoder(latents, cond)
        if self.likelihood is not None:
            showers = self.likelihood.sample(params, incident, *rest)
        else:
            showers = self.coding.inverse(params[..., 0], incident)
        if self.first_stage is None:
            return showers
        # the hit logit (hurdle) or the code ranks which voxel takes a layer the decoder left empty
        preference = params[..., 0].float()
        return self.first_stage.decomposition.compose(layer_energies, self.apply_cut(showers), self.cut, preference)


__all__ = ["ConditionalVAE", "VAEConfig"]
