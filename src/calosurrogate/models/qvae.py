"""Quantum-assisted VAE: binary latent units with a Boltzmann-machine prior.

After CaloQVAE / Calo4pQVAE (Hoque, Toledo-Marin, Lu et al., arXiv:2312.03179 and
"Conditioned quantum-assisted deep generative surrogate for particle-calorimeter
interactions", arXiv:2410.22870): the encoder gives Bernoulli probabilities of binary latent
units, the prior over those units is a conditional Boltzmann machine
(:mod:`~calosurrogate.models.boltzmann`, bipartite or four-partite), and the decoder maps a
binary state and the conditions to a shower. Because the prior is an Ising model, it can be
sampled by a quantum annealer; here the sampler is pluggable (block Gibbs by default,
simulated annealing, or a D-Wave annealer when configured).

Training (the GumBolt relaxation, Khoshaman and Amin, arXiv:1805.07445): latent units are
relaxed to ``zeta = sigmoid((logit + logistic noise) / tau)`` so gradients flow; the KL term is
``E_q[log q(zeta)] + E_q[E(zeta; c)] + log Z(c)``, where the gradient of ``log Z`` is
``-E_p[dE/dtheta]``, estimated from persistent contrastive divergence chains (Tieleman 2008)
run at the batch's conditions. The logged loss therefore omits the constant ``log Z``: it
tracks training but is not a bound to compare across models (early stopping is off by default).

``layer_energies``: generate in two stages (CaloFlow, Krause and Shih, arXiv:2106.05285): a flow
draws the layer energies (:class:`~calosurrogate.models.components.LayerEnergyStage`), the QVAE,
told them, draws the voxels, and each layer is rescaled to its drawn energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from calosurrogate.models.base import ConfigError, Surrogate, register
from calosurrogate.models.boltzmann import LAYOUTS, BoltzmannMachine
from calosurrogate.models.boltzmann_samplers import (
    SAMPLERS,
    GibbsSampler,
    PriorSampler,
    estimate_effective_beta,
    make_sampler,
)
from calosurrogate.models.components import (
    HurdleLikelihood,
    LayerEnergyStage,
    LogEnergyCoding,
    ShowerDecoder,
    ShowerEncoder,
)


@dataclass
class QVAEConfig:
    """Settings of the quantum-assisted VAE.

    Attributes:
        layout: ``"bipartite"`` (RBM) or ``"four-partite"`` (Calo4pQVAE).
        units_per_partition: Binary units in each partition.
        hidden, layers: Encoder and decoder MLP size.
        beta: Weight of the KL term.
        temperature: Relaxation temperature ``tau``.
        pcd_chains: Persistent chains of the negative phase.
        pcd_sweeps: Gibbs sweeps of the chains per training step.
        sampler: Prior sampler for generation: ``"gibbs"``, ``"annealing"`` or ``"quantum"``.
        sampler_sweeps: Sweeps of the Gibbs or annealing sampler at generation.
        layer_energies: Two stages: a flow over the layer energies first (module docstring).
        occupancy: With ``layer_energies``, the stage first draws which layers hold energy.
        energy_cut_mev: Hit threshold and sampling cut (None: the dataset's threshold).
        seed: Seed of the initial weights.
    """

    layout: str = "bipartite"
    units_per_partition: int = 64
    hidden: int = 512
    layers: int = 2
    beta: float = 1.0
    temperature: float = 0.4
    pcd_chains: int = 512
    pcd_sweeps: int = 2
    sampler: str = "gibbs"
    sampler_sweeps: int = 100
    layer_energies: bool = False
    occupancy: bool = False
    energy_cut_mev: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"qvae: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"qvae: sampler must be one of {sorted(SAMPLERS)}, got {self.sampler!r}")
        if self.occupancy and not self.layer_energies:
            raise ConfigError("qvae: occupancy is part of the layer-energy stage; set layer_energies too")


@register("qvae")
class QuantumAssistedVAE(Surrogate):
    """VAE with binary latents and a conditional Boltzmann-machine prior (see module docstring)."""

    config_class = QVAEConfig

    def __init__(self, config: QVAEConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        k = len(condition_names)
        self.conditions_map = self.new_condition_map()
        self.coding = LogEnergyCoding(geometry.n_voxels, float(self.cut), hits_only=True)
        self.likelihood = HurdleLikelihood(self.coding)
        self.first_stage = None
        if config.layer_energies:
            offsets = geometry.layer_offsets.tolist()
            self.first_stage = LayerEnergyStage.with_coupling_flow(offsets, k, config.occupancy, config.seed)
            k += geometry.n_layers  # encoder, decoder and prior are told the layer energies
        self.prior = BoltzmannMachine.from_layout(config.layout, config.units_per_partition, k)
        n_units = self.prior.n_units
        self.encoder = ShowerEncoder(geometry, k, n_units, config.hidden, config.layers)
        self.decoder = ShowerDecoder(geometry, k, n_units, HurdleLikelihood.n_params, config.hidden, config.layers)
        # Persistent chains of the negative phase: saved with the model, so a resumed run continues them.
        self.register_buffer("chains", torch.bernoulli(torch.full((config.pcd_chains, n_units), 0.5)))
        self.prior_sampler: PriorSampler = make_sampler(config.sampler, config.sampler_sweeps)

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        self.coding.fit(showers, conditions[:, :1])
        if self.first_stage is not None:
            self.first_stage.fit_showers(self.apply_cut(showers), conditions[:, :1].float(), self.cut)
        self._fitted.fill_(True)

    def _negative_phase(self, fields: Tensor) -> Tensor:
        """Energies of model samples at the batch's fields, from the persistent chains ``(N,)``."""
        n = len(fields)
        index = torch.arange(n, device=fields.device) % len(self.chains)
        start = self.chains[index]
        if self.training:
            states = GibbsSampler(self.config.pcd_sweeps).sample(self.prior, fields.detach(), initial=start)
            self.chains[index[: len(self.chains)]] = states[: len(self.chains)]
        else:
            states = start
        return self.prior.energy(states.detach(), fields)

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Negative ELBO per voxel without ``log Z`` (module docstring; with two stages, plus the
        layer energies' negative log-likelihood), ``(N,)``."""
        cond = self.conditions_map(conditions)
        incident = conditions[:, :1]
        energy_nll = 0.0
        if self.first_stage is not None:
            cond, energy_nll = self.first_stage.conditioned(self.apply_cut(showers), incident.float(), cond, self.cut)
        logits = self.encoder(self.coding(showers, incident), cond).float()
        u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
        zeta = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.config.temperature)
        reconstruction = self.likelihood.log_prob(self.decoder(zeta, cond), showers, incident)
        log_q = (zeta * F.logsigmoid(logits) + (1 - zeta) * F.logsigmoid(-logits)).sum(-1)
        fields = self.prior.fields(cond)
        kl = log_q + self.prior.energy(zeta, fields) - self._negative_phase(fields)
        return (self.config.beta * kl - reconstruction + energy_nll) / self.geometry.n_voxels

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        """The prior's binary states (from the prior sampler: Gibbs, annealing or a quantum
        annealer) and the decoder's random numbers; the exported graph starts from these.

        With two stages the layer energies are drawn here too (the prior's fields depend on
        them), and their random numbers come after the states."""
        return self._noise_and_drawn(conditions)[0]

    def sample_showers(self, conditions: Tensor) -> Tensor:
        # the layer energies the prior's states were drawn for, not drawn a second time from the noise
        noise, cond, layer_energies = self._noise_and_drawn(conditions)
        states, *_, uniform, normal = noise
        return self._decoded(conditions, cond, layer_energies, states, uniform, normal)

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        states, *stage_inputs, uniform, normal = noise
        cond, layer_energies = self.conditions_map(conditions), None
        if self.first_stage is not None:
            cond, layer_energies = self.first_stage.drawn(cond, conditions[:, :1].float(), stage_inputs, self.cut)
        return self._decoded(conditions, cond, layer_energies, states, uniform, normal)

    def _noise_and_drawn(self, conditions: Tensor) -> tuple[tuple[Tensor, ...], Tensor, Tensor | None]:
        """:meth:`sample_noise`'s tensors, the mapped conditions (with two stages, plus the drawn
        layer energies' context) and the drawn layer energies (MeV, ``(N, L)``; None in one stage)."""
        cond, stage_inputs, layer_energies = self._drawn_conditions(conditions)
        n, v, device = len(conditions), self.geometry.n_voxels, conditions.device
        states = self.prior_sampler.sample(self.prior, self.prior.fields(cond).float()).to(device)
        noise = (states, *stage_inputs, torch.rand(n, v, device=device), torch.randn(n, v, device=device))
        return noise, cond, layer_energies

    def _drawn_conditions(self, conditions: Tensor) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """Mapped conditions of raw ``conditions``, with two stages plus freshly drawn layer
        energies' context; the stage's random numbers and the layer energies (MeV)."""
        cond = self.conditions_map(conditions)
        if self.first_stage is None:
            return cond, [], None
        stage_inputs = self.first_stage.random_inputs(len(conditions), conditions.device)
        cond, layer_energies = self.first_stage.drawn(cond, conditions[:, :1].float(), stage_inputs, self.cut)
        return cond, stage_inputs, layer_energies

    def _decoded(
        self, conditions: Tensor, cond: Tensor, layer_energies: Tensor | None, states: Tensor, uniform: Tensor,
        normal: Tensor,
    ) -> Tensor:  # fmt: skip
        """Showers (MeV) from the prior's states, composed to the layer energies in two stages."""
        params = self.decoder(states, cond)
        showers = self.likelihood.sample(params, conditions[:, :1], uniform, normal)
        if layer_energies is None:
            return showers
        # the hit logit ranks which voxel takes a layer the decoder left empty
        preference = params[..., 0].float()
        return self.first_stage.decomposition.compose(layer_energies, self.apply_cut(showers), self.cut, preference)

    @torch.no_grad()
    def effective_beta(self, conditions: Tensor, sampler: PriorSampler | None = None) -> tuple[float, float]:
        """Effective inverse temperature ``(beta, error)`` of a prior sampler on this model's machine.

        Draws one prior state per row of raw ``conditions`` with ``sampler`` (default: the
        model's) and finds the ``beta`` whose Boltzmann distribution has the same mean energy
        (:func:`~calosurrogate.models.boltzmann_samplers.estimate_effective_beta`). A faithful
        sampler gives 1.
        """
        cond, *_ = self._drawn_conditions(torch.as_tensor(conditions, dtype=torch.float32).to(self.device))
        fields = self.prior.fields(cond)
        states = (sampler or self.prior_sampler).sample(self.prior, fields)
        return estimate_effective_beta(self.prior, fields, states.to(fields.device))


__all__ = ["QVAEConfig", "QuantumAssistedVAE"]
