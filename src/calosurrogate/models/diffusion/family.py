"""The diffusion family's wiring: coding, optional layer-energy first stage, objective, backbone, sampler.

Showers are coded as standardised ``log(1 + (E / E_inc) / delta)`` per voxel
(:class:`~calosurrogate.models.components.LogEnergyCoding`; empty voxels sit at a fixed code and
the sampling cut restores exact zeros). A backbone (:mod:`.backbones`: residual MLP, layer
transformer, or CaloDiffusion's cylindrical U-Net, through GLaM's learned maps on dataset 1)
is trained with an objective (:mod:`.objectives`: EDM, its spike-and-slab variant, cosine DDPM,
v-prediction, flow matching), which also turns it into the denoiser ``D(x, sigma)`` that every
sampler of :mod:`.samplers` integrates, with any number of steps chosen at sampling time
(:meth:`DiffusionSurrogate.configure_sampling`).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate.models.base import CheckpointError, ConfigError, Surrogate, register
from calosurrogate.models.components import (
    FaintLayerLibrary,
    LayerEnergyStage,
    LogEnergyCoding,
)
from calosurrogate.models.diffusion import samplers
from calosurrogate.models.diffusion.backbones import BACKBONES
from calosurrogate.models.diffusion.config import DiffusionConfig, config_from_format_1
from calosurrogate.models.diffusion.objectives import OBJECTIVES, Objective
from calosurrogate.models.diffusion.variance import PosteriorVariance


@register("diffusion")
class DiffusionSurrogate(Surrogate):
    """Diffusion and flow-matching surrogate (see module docstring)."""

    config_class = DiffusionConfig

    @classmethod
    def upgrade_config(cls, config: dict[str, Any], format_version: int, source: str) -> dict[str, Any]:
        if format_version >= 2:
            return config
        try:
            return config_from_format_1(config, source)
        except ValueError as err:
            raise CheckpointError(str(err)) from err

    def __init__(self, config: DiffusionConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        k = len(condition_names)
        self.conditions_map = self.new_condition_map()
        self.coding = LogEnergyCoding(geometry.n_voxels, float(self.cut), scale_on_hits=config.code_scale == "hits")
        self.first_stage: LayerEnergyStage | None = None
        self.objective: Objective = OBJECTIVES[config.objective.name].build(config.objective, self.coding)
        stage = config.first_stage
        if stage.layer_energies:
            self.first_stage = LayerEnergyStage.with_coupling_flow(
                geometry.layer_offsets.tolist(), k, stage.occupancy, config.seed
            )
            k = k + geometry.n_layers  # the voxel model also sees the (standardised log) layer energies
        self.library = FaintLayerLibrary(geometry.layer_offsets.tolist()) if stage.library else None
        build = BACKBONES[config.backbone.name]
        self.net = build(geometry, k, config.backbone, self.objective.outputs_per_voxel)
        # The frozen teacher of a distillation student (same architecture, weights copied in).
        self.teacher = copy.deepcopy(self.net).requires_grad_(False) if config.distill_steps else None
        sampling = config.sampling
        self.posterior_variance = PosteriorVariance(geometry.n_voxels, sampling.sigma_min, sampling.sigma_max)
        self.register_buffer("code_low", torch.full((geometry.n_voxels,), -10.0))
        self.register_buffer("code_high", torch.full((geometry.n_voxels,), 10.0))

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        if self.teacher is not None and bool(self._fitted):
            return  # a student keeps its teacher's preprocessing: the teacher's network expects it
        self.conditions_map.fit(conditions)
        self.coding.fit(showers, conditions[:, :1])
        if self.first_stage is not None:
            self.first_stage.fit_showers(self.apply_cut(showers), conditions[:, :1].float(), self.cut)
        if self.library is not None:
            self.library.fit(self.apply_cut(showers), conditions[:, :1], seed=self.config.seed)
        codes = self._encode(showers, conditions)
        margin = 0.1 * (codes.max(0).values - codes.min(0).values) + 1e-3
        self.code_low.copy_(codes.min(0).values - margin)
        self.code_high.copy_(codes.max(0).values + margin)
        self._fitted.fill_(True)

    @torch.no_grad()
    def calibrate_sampling(self, showers: Tensor, conditions: Tensor) -> None:
        """The posterior-variance table of the ``analytic-ddpm`` sampler
        (:class:`~calosurrogate.models.diffusion.variance.PosteriorVariance`)."""
        if self.teacher is not None:
            return  # a distillation student samples deterministically (Euler)
        codes, context = self._encode(showers, conditions), self._context(showers, conditions)
        self.posterior_variance.fit(self.denoiser, codes, context, seed=self.config.seed)

    def _encode(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Showers (MeV) -> what the backbone denoises: standardised codes."""
        return self.coding(showers, conditions[:, :1])

    # -------------------------------------------------------- layer-energy stage
    def _layer_energies(self, showers: Tensor) -> Tensor:
        """Layer energies (MeV) ``(N, L)``, counted over voxels above the cut, as the voxel coding sees
        them: the training loop's dequantisation noise would otherwise give every empty ds2 layer
        about 0.07 MeV, which the first stage learns and the sampled showers keep as a faint hit."""
        return self.first_stage.decomposition.layer_energies(self.apply_cut(showers))

    def _context(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """What the voxel model is conditioned on: mapped conditions (+ standardised log layer energies)."""
        cond = self.conditions_map(conditions)
        if self.first_stage is None:
            return cond
        return torch.cat([cond, self.first_stage.context(self._layer_energies(showers), self.cut)], dim=1)

    def _energy_nll(self, showers: Tensor, conditions: Tensor) -> Tensor:
        nll = self.first_stage.nll(
            self._layer_energies(showers), conditions[:, :1].float(), self.conditions_map(conditions)
        )
        return nll / self.geometry.n_layers

    # ----------------------------------------------------------------- objectives
    def objective_loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Per-shower objective (mean over voxels; plus the layer-energy flow's NLL per layer), ``(N,)``."""
        extra = self._energy_nll(showers, conditions) if self.config.first_stage.layer_energies else 0.0
        return self._voxel_loss(showers, conditions) + extra

    def _voxel_loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        cond = self._context(showers, conditions)
        x0 = self._encode(showers, conditions)
        return self.objective.loss(self.net, x0, torch.randn_like(x0), cond)

    def denoiser(self, cond: Tensor, net: nn.Module | None = None) -> samplers.Denoiser:
        """``D(x, sigma)`` in variance-exploding coordinates for mapped conditions ``(N, K)``
        (with ``net``: another backbone of the same kind, the distillation teacher)."""
        net = self.net if net is None else net

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            estimate = self.objective.denoise(net, x, sigma.float(), cond)
            if not self.config.sampling.clip_denoised:
                return estimate
            return torch.minimum(torch.maximum(estimate, self.code_low), self.code_high)

        return denoise

    # -------------------------------------------------------------- distillation
    def distilled(self, steps: int) -> DiffusionSurrogate:
        """A student for progressive distillation (Salimans and Ho, arXiv:2202.00512).

        The student starts as a copy of this model; trained with the usual loop (same data), each
        of its ``steps`` Euler steps learns to land where two of this model's Euler steps land on
        the grid of ``2 * steps`` noise levels. Its default sampler is then Euler with ``steps``.
        Repeat (student -> teacher) to halve the steps again: 32 -> 16 -> 8 -> 4 -> 2 -> 1.
        """
        if steps < 1:
            raise ConfigError(f"diffusion: distillation needs at least 1 student step, got {steps}")
        sampling = dataclasses.replace(self.config.sampling, sampler="euler", steps=int(steps))
        config = dataclasses.replace(copy.deepcopy(self.config), distill_steps=int(steps), sampling=sampling)
        student = type(self)(config, self.geometry, self.condition_names)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}
        student.load_state_dict(state, strict=False)
        student.teacher.load_state_dict(self.net.state_dict())
        return student

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], dict[str, Any]]]:
        return {"model": ([p for name, p in self.named_parameters() if not name.startswith("teacher.")], {})}

    def training_step(self, showers: Tensor, conditions: Tensor, update) -> dict[str, Tensor]:
        if self.teacher is None:
            return super().training_step(showers, conditions, update)
        loss = self.distillation_loss(showers, conditions).mean()
        update("model", loss)
        return {"loss": loss.detach()}

    def distillation_loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Per-shower squared distance between the student's denoised estimate and the one that
        makes its single Euler step match two teacher steps, ``(N,)``."""
        cfg = self.config
        cond = self._context(showers, conditions)
        x0 = self._encode(showers, conditions)
        grid = samplers.karras_sigmas(2 * cfg.distill_steps, cfg.sampling.sigma_min, cfg.sampling.sigma_max).to(
            x0.device
        )
        i = torch.randint(0, cfg.distill_steps, (x0.shape[0],), device=x0.device)
        s, s_mid, s_next = grid[2 * i].float(), grid[2 * i + 1].float(), grid[2 * i + 2].float()
        x = x0 + s[:, None] * torch.randn_like(x0)
        with torch.no_grad():
            teacher = self.denoiser(cond, self.teacher)
            x_mid = x + ((s_mid - s) / s)[:, None] * (x - teacher(x, s))  # s_mid > 0: never the last level
            x_next = x_mid + ((s_next - s_mid) / s_mid)[:, None] * (x_mid - teacher(x_mid, s_mid))
            target = x - (s / (s_next - s))[:, None] * (x_next - x)  # the D with x + (s_next - s)(x - D)/s = x_next
        return ((self.denoiser(cond)(x, s) - target) ** 2).mean(1)

    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        if self.teacher is not None:
            return self.distillation_loss(showers, conditions)
        return self.objective_loss(showers, conditions)

    # ------------------------------------------------------------------- sampling
    def configure_sampling(self, **options: Any) -> None:
        """Choose the sampler, number of steps, highest noise level or compilation for later sampling
        (``sampler=``, ``steps=``, ``sigma_max=``, ``compile=``)."""
        unknown = set(options) - {"sampler", "steps", "sigma_max", "compile"}
        if unknown:
            raise ConfigError(
                f"diffusion: unknown sampling option(s) {sorted(unknown)}; valid: sampler, steps, sigma_max, compile"
            )
        current = self.config.sampling
        self.config.sampling = dataclasses.replace(  # validated as the config is
            current, sampler=options.get("sampler") or current.sampler, steps=int(options.get("steps") or current.steps),
            sigma_max=float(options.get("sigma_max") or current.sigma_max),
            compile=bool(options.get("compile", current.compile)),
        )  # fmt: skip

    def prepare_sampling(
        self, conditions: np.ndarray | Tensor, device: str | torch.device | None = None, precision: str = "fp32"
    ) -> None:
        """Compile the denoiser for batches like ``conditions`` (one step of the sampler: the
        compiled denoiser is the same at every step)."""
        if not self.config.sampling.compile:
            return
        steps = self.config.sampling.steps
        self.configure_sampling(steps=1)
        try:
            self.sample(conditions, batch_size=len(conditions), device=device, precision=precision)
        finally:
            self.configure_sampling(steps=steps)

    def _start_noise(self, conditions: Tensor) -> list[Tensor]:
        """The random inputs other than the ancestral sampler's fresh noise of each step."""
        n, device = conditions.shape[0], conditions.device
        noise = [torch.randn(n, self.geometry.n_voxels, device=device)]
        if self.first_stage is not None:  # the flow's noise and the occupancy's uniforms
            noise += self.first_stage.random_inputs(n, device)
        if self.config.first_stage.library:  # the library's choices
            noise.append(torch.rand(n, self.geometry.n_layers, device=device))
        return noise

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        noise = self._start_noise(conditions)
        if self.config.sampling.sampler in samplers.STOCHASTIC:
            n, v = conditions.shape[0], self.geometry.n_voxels
            noise.append(torch.randn(self.config.sampling.steps, n, v, device=conditions.device))
        return tuple(noise)

    def sample_showers(self, conditions: Tensor) -> Tensor:
        # The ancestral sampler draws each step's fresh noise when it needs it: all steps at once
        # would be steps x N x V numbers (17 GB for 10,000 ds2 showers at 64 steps).
        return self.showers_from_noise(conditions, *self._start_noise(conditions))

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        stage, sampling = self.config.first_stage, self.config.sampling
        noise = list(noise)
        start = noise.pop(0)
        cond = self.conditions_map(conditions)
        incident = conditions[:, :1].float()
        if stage.layer_energies:
            inputs = [noise.pop(0) for _ in range(1 + stage.occupancy)]
            choice = noise.pop(0) if stage.library else None
            cond, layer_e = self.first_stage.drawn(cond, incident, inputs, self.cut)
        denoiser = self.denoiser(cond)
        variance = None
        if sampling.sampler == "analytic-ddpm":
            if not bool(self.posterior_variance.calibrated):
                raise ConfigError(
                    "diffusion: the analytic-ddpm sampler needs the posterior variance measured after "
                    "training, which this model lacks (trained before it existed): measure it with "
                    "calo calibrate --run RUN --data TRAIN.h5 --force, or use --sampler ddpm"
                )
            variance = self.posterior_variance
        codes = samplers.sample(
            denoiser, start.float(), sampling.steps, sampling.sampler, sampling.sigma_min, sampling.sigma_max,
            ancestral_noise=noise.pop(0) if noise else None, posterior_variance=variance, compile=sampling.compile,
        )  # fmt: skip
        showers = self.coding.inverse(codes, incident)
        if stage.layer_energies:  # the first stage decides the layer energies; the voxel model their spread
            decomposition = self.first_stage.decomposition
            # The voxel model's own sub-cut voxels are empty: decoded at the empty code they are
            # rounding residues (~1e-12 MeV), which scaling to a layer energy would make hits.
            showers = self.apply_cut(showers)
            fill = None
            if stage.library_max_hits:  # the layers the voxel model makes this faint go to the library
                hits = decomposition.layer_energies((showers > 0).float())
                showers = torch.where(decomposition.per_voxel(hits <= stage.library_max_hits), 0.0, showers)
            if self.library is not None:

                def fill(lost: Tensor) -> Tensor:
                    return self.library.patterns(layer_e, incident, lost, choice)

            showers = decomposition.compose(layer_e, showers, self.cut, self._hit_preference(codes), fill)
        return showers

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False):
        # Models saved before the first stage was shared hold its entries at the top level; models
        # saved before the posterior variance existed have none (uncalibrated: analytic-ddpm refuses).
        state_dict = LayerEnergyStage.moved_keys(state_dict, "first_stage.")
        missing = {f"posterior_variance.{k}": v for k, v in self.posterior_variance.state_dict().items()}
        return super().load_state_dict({**missing, **state_dict}, strict, assign)

    def _hit_preference(self, codes: Tensor) -> Tensor:
        """Which voxel the voxel model holds most likely to be hit: its unclipped log code; among voxels
        snapped to the empty code (which differ only by rounding), the one whose training hits
        are largest (the shower core)."""
        raw = self.coding.unstandardise(codes)
        at_empty = raw.abs() < 1e-3  # a hit is at least log(1 + GAP) above the empty code
        core = self.coding.mean / self.coding.mean.abs().max().clamp_min(1e-30)  # in [-1, 1]
        return torch.where(at_empty, 5e-4 * core.expand_as(raw), raw)  # keeps their place among the others


__all__ = ["DiffusionConfig", "DiffusionSurrogate"]
