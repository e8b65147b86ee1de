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
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from calosurrogate.data.transforms import ConditionMap, Logit, Standardize
from calosurrogate.models.base import CheckpointError, ConfigError, Surrogate, register
from calosurrogate.models.components import (
    AutoregressiveBernoulli,
    FaintLayerLibrary,
    LayerDecomposition,
    LogEnergyCoding,
    coupling_spline_flow,
    flow_from_noise,
    flow_log_prob,
)
from calosurrogate.models.diffusion import samplers
from calosurrogate.models.diffusion.backbones import CylindricalUNet, LayerTransformer, ResidualMLP, SpikeSlabMLP
from calosurrogate.models.diffusion.glam import GeometryLatentMap, GridBackbone
from calosurrogate.models.diffusion.objectives import OBJECTIVES, Objective, SpikeSlabEDM


@dataclass
class DiffusionConfig:
    """Settings of the diffusion / flow-matching family.

    Attributes:
        objective: ``"edm"``, ``"ddpm"``, ``"v"`` or ``"flow-matching"``.
        backbone: ``"mlp"``, ``"transformer"`` (one token per layer) or ``"unet"`` (on irregular
            geometries through GLaM, :mod:`~calosurrogate.models.glam`).
        hidden, blocks: Residual MLP size.
        spike_slab: The residual MLP predicts, per voxel, a spike-and-slab prior (empty code or a
            Gaussian of hits) and the denoiser is its exact posterior mean
            (:class:`~calosurrogate.models.diffusion.objectives.SpikeSlabEDM`): empty voxels snap
            to the empty code at low noise instead of ending as faint hits or as dimmed real
            ones. EDM objective, MLP backbone.
        unet_channels: U-Net channels at full and half resolution.
        unet_attention: Linear attention over all cells at the U-Net's coarse level.
        transformer_dim, transformer_depth: Width and blocks of the layer transformer.
        sampler: Default sampler (``euler``, ``heun``, ``rk4``, ``dpm2m``, ``ddpm``).
        steps: Default number of noise levels at sampling.
        sigma_min, sigma_max: Noise levels the sampler runs between (standardised codes).
        sigma_data: EDM's data standard deviation (the codes are standardised: 1).
        p_mean, p_std: EDM's log-normal distribution of training noise levels.
        clip_denoised: Clamp every denoised estimate to the per-voxel range of the training codes
            (DDPM's "clip x0"; it stops errors of noise predictions, multiplied by the noise level,
            from throwing the sampler far outside the data).
        code_scale: ``"all"``: standardise each voxel's code over all showers; ``"hits"``: with
            the mean and spread of its hits only (see
            :class:`~calosurrogate.models.components.LogEnergyCoding`).
        layer_energies: Add a first stage, a coupling spline flow over the layer energies (CaloFlow's
            flow I coding), and condition the voxel model on them; sampled showers are rescaled
            layer by layer to the sampled layer energies (as CaloDREAM's two-stage generation).
        layer_occupancy: The first stage first draws which layers hold energy (an autoregressive
            Bernoulli over the layers, :class:`~calosurrogate.models.components.AutoregressiveBernoulli`),
            then the flow draws only the codes the occupancy leaves free, given the occupancy
            (:meth:`~calosurrogate.models.components.LayerDecomposition.determined_codes`): empty
            layers stay exactly empty instead of receiving a trace of energy. Needs ``layer_energies``.
        layer_library: A layer the first stage fills but the voxel model leaves empty takes the hit
            pattern of a faint training layer of similar layer and incident energy
            (:class:`~calosurrogate.models.components.FaintLayerLibrary`) instead of one voxel
            holding all its energy. Needs ``layer_energies``.
        library_max_hits: With ``layer_library``, a layer the voxel model gives at most this many
            hits counts as lost too and takes a library pattern (0: only layers left empty). Where
            a layer's energy is a handful of sampling spots, the data's own patterns place them
            better than a voxel model that under-samples rare hits.
        distill_steps: 0 for an ordinary model; N > 0 for a student of progressive distillation,
            trained to reproduce in N Euler (DDIM) steps what its frozen teacher does in 2N
            (:meth:`DiffusionSurrogate.distilled`).
        energy_cut_mev: Sampling cut (None: the dataset's threshold).
        seed: Seed of the initial weights.
    """

    objective: str = "edm"
    backbone: str = "mlp"
    hidden: int = 512
    blocks: int = 4
    spike_slab: bool = False
    unet_channels: tuple[int, int] = (16, 32)
    unet_attention: bool = False
    transformer_dim: int = 128
    transformer_depth: int = 4
    sampler: str = "heun"
    steps: int = 32
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2
    clip_denoised: bool = True
    code_scale: str = "all"
    layer_energies: bool = False
    layer_occupancy: bool = False
    layer_library: bool = False
    library_max_hits: int = 0
    distill_steps: int = 0
    energy_cut_mev: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.unet_channels = tuple(self.unet_channels)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"diffusion: objective must be one of {tuple(OBJECTIVES)}, got {self.objective!r}")
        if self.backbone not in ("mlp", "unet", "transformer"):
            raise ConfigError(f"diffusion: backbone must be mlp, unet or transformer, got {self.backbone!r}")
        if self.code_scale not in ("all", "hits"):
            raise ConfigError(f"diffusion: code_scale must be 'all' or 'hits', got {self.code_scale!r}")
        if self.spike_slab and (self.objective, self.backbone) != ("edm", "mlp"):
            raise ConfigError(
                f"diffusion: spike_slab needs objective 'edm' and backbone 'mlp', got {self.objective!r}, {self.backbone!r}"
            )
        for option in ("layer_occupancy", "layer_library"):
            if getattr(self, option) and not self.layer_energies:
                raise ConfigError(f"diffusion: {option} is part of the layer-energy stage; set layer_energies too")
        if self.library_max_hits and not self.layer_library:
            raise ConfigError("diffusion: library_max_hits chooses layers for the library; set layer_library too")
        if self.library_max_hits < 0:
            raise ConfigError(f"diffusion: library_max_hits must be at least 0, got {self.library_max_hits}")
        _check_sampling(self.sampler, self.steps)


def _check_sampling(sampler: str, steps: int) -> None:
    if sampler not in samplers.SAMPLERS:
        raise ConfigError(f"diffusion: sampler must be one of {samplers.SAMPLERS}, got {sampler!r}")
    if int(steps) < 1:
        raise ConfigError(f"diffusion: steps must be at least 1, got {steps}")


@register("diffusion")
class DiffusionSurrogate(Surrogate):
    """Diffusion and flow-matching surrogate (see module docstring)."""

    config_class = DiffusionConfig
    # Options of format 1 that lost their ablation (BENCHMARKS.md, diffusion ablation), with the
    # value that meant "off": a model saved with one of them off loads; with one on, it cannot.
    REMOVED_OPTIONS: ClassVar[dict[str, Any]] = {
        "voxel_skip": False, "pointwise_hidden": 0, "low_noise_gate": False, "whitening": "none",
    }  # fmt: skip

    @classmethod
    def upgrade_config(cls, config: dict[str, Any], format_version: int, source: str) -> dict[str, Any]:
        if format_version >= 2:
            return config
        for key, off in cls.REMOVED_OPTIONS.items():
            if key in config and config.pop(key) != off:
                raise CheckpointError(
                    f"{source}: a format-1 diffusion model with {key} on; that option was removed in format 2 "
                    "after it lost its ablation (BENCHMARKS.md), so this model cannot be loaded"
                )
        return config

    def __init__(self, config: DiffusionConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        k = len(condition_names)
        self.conditions_map = ConditionMap(k)
        self.coding = LogEnergyCoding(geometry.n_voxels, float(self.cut), scale_on_hits=config.code_scale == "hits")
        self.occupancy: AutoregressiveBernoulli | None = None
        edm = {"sigma_data": config.sigma_data, "p_mean": config.p_mean, "p_std": config.p_std}
        if config.spike_slab:
            self.objective: Objective = SpikeSlabEDM(self.coding.empty_code, **edm)
        else:
            self.objective = (
                OBJECTIVES[config.objective](**edm) if config.objective == "edm" else OBJECTIVES[config.objective]()
            )
        if config.layer_energies:
            n_layers = geometry.n_layers
            self.decomposition = LayerDecomposition(geometry.layer_offsets.tolist())
            self.logit = Logit(1e-6)
            self.energy_scaler = Standardize(n_layers)
            self.log_energy_scaler = Standardize(n_layers)
            # Told the occupancy, the flow learns the free codes; the fixed ones are filled with noise.
            flow_context = k + n_layers if config.layer_occupancy else k
            self.energy_flow = coupling_spline_flow(n_layers, flow_context, 6, 128, 8, config.seed)
            self.occupancy = AutoregressiveBernoulli(n_layers, k) if config.layer_occupancy else None
            k = k + n_layers  # the voxel model also sees the (standardised log) layer energies
        self.library = FaintLayerLibrary(geometry.layer_offsets.tolist()) if config.layer_library else None
        if config.backbone == "transformer":
            self.net = LayerTransformer(geometry, k, config.transformer_dim, config.transformer_depth)
        elif config.backbone == "unet" and geometry.is_regular:
            self.net = CylindricalUNet(geometry, k, config.unet_channels, config.unet_attention)
        elif config.backbone == "unet":  # irregular layers (dataset 1): convolve on GLaM's regular grid
            glam = GeometryLatentMap(geometry)
            self.net = GridBackbone(
                glam, CylindricalUNet(glam.latent_geometry, k, config.unet_channels, config.unet_attention)
            )
        else:
            mlp = SpikeSlabMLP if config.spike_slab else ResidualMLP
            self.net = mlp(geometry.n_voxels, k, config.hidden, config.blocks)
        # The frozen teacher of a distillation student (same architecture, weights copied in).
        self.teacher = copy.deepcopy(self.net).requires_grad_(False) if config.distill_steps else None
        self.register_buffer("code_low", torch.full((geometry.n_voxels,), -10.0))
        self.register_buffer("code_high", torch.full((geometry.n_voxels,), 10.0))

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        if self.teacher is not None and bool(self._fitted):
            return  # a student keeps its teacher's preprocessing: the teacher's network expects it
        self.conditions_map.fit(conditions)
        self.coding.fit(showers, conditions[:, :1])
        if self.config.layer_energies:
            layer_e, u, log_e = self._layer_codes(showers, conditions)
            free = None if self.occupancy is None else ~self.decomposition.determined_codes(layer_e > 0)[0]
            self.energy_scaler.fit(u, free)
            self.log_energy_scaler.fit(log_e)
        if self.library is not None:
            self.library.fit(self.apply_cut(showers), conditions[:, :1], seed=self.config.seed)
        codes = self._encode(showers, conditions)
        margin = 0.1 * (codes.max(0).values - codes.min(0).values) + 1e-3
        self.code_low.copy_(codes.min(0).values - margin)
        self.code_high.copy_(codes.max(0).values + margin)
        self._fitted.fill_(True)

    def _encode(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Showers (MeV) -> what the backbone denoises: standardised codes."""
        return self.coding(showers, conditions[:, :1])

    # -------------------------------------------------------- layer-energy stage
    def _layer_codes(self, showers: Tensor, conditions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Layer energies (MeV), their flow codes ``u`` (logit) and ``log10(E + cut)``, each ``(N, L)``.

        Counted over voxels above the cut, as the voxel coding sees them: the training loop's
        dequantisation noise would otherwise give every empty ds2 layer about 0.07 MeV, which the
        first stage learns and the sampled showers keep as a faint hit.
        """
        layer_e = self.decomposition.layer_energies(self.apply_cut(showers))
        u = self.logit(self.decomposition.encode_energies(layer_e, conditions[:, :1].float()))
        return layer_e, u, torch.log10(layer_e + self.cut)

    def _context(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """What the voxel model is conditioned on: mapped conditions (+ standardised log layer energies)."""
        cond = self.conditions_map(conditions)
        if not self.config.layer_energies:
            return cond
        _, _, log_e = self._layer_codes(showers, conditions)
        return torch.cat([cond, self.log_energy_scaler(log_e)], dim=1)

    def _energy_nll(self, showers: Tensor, conditions: Tensor) -> Tensor:
        layer_e, u, _ = self._layer_codes(showers, conditions)
        z, cond = self.energy_scaler(u), self.conditions_map(conditions)
        if self.occupancy is None:
            return -flow_log_prob(self.energy_flow, z, cond) / self.geometry.n_layers
        occupied = (layer_e > 0).float()
        fixed, _ = self.decomposition.determined_codes(occupied)
        z = torch.where(fixed, torch.randn_like(z), z)  # the flow need not model what occupancy fixes
        nll = -flow_log_prob(self.energy_flow, z, torch.cat([cond, occupied], dim=1))
        return (nll - self.occupancy.log_prob(occupied, cond)) / self.geometry.n_layers

    def _sample_layer_energies(self, cond: Tensor, incident: Tensor, noise: Tensor, uniform: Tensor | None) -> Tensor:
        """First stage: layer energies (MeV) ``(N, L)`` from the flow's base noise (and the occupancy's uniforms)."""
        occupied = None if self.occupancy is None else self.occupancy.sample_from_uniform(cond, uniform)
        context = cond if occupied is None else torch.cat([cond, occupied], dim=1)
        u = self.logit.inverse(self.energy_scaler.inverse(flow_from_noise(self.energy_flow, context, noise)))
        if occupied is not None:
            fixed, values = self.decomposition.determined_codes(occupied)
            u = torch.where(fixed, values.to(u.dtype), u)
        return self.decomposition.decode_energies(u, incident)

    # ----------------------------------------------------------------- objectives
    def objective_loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        """Per-shower objective (mean over voxels; plus the layer-energy flow's NLL per layer), ``(N,)``."""
        extra = self._energy_nll(showers, conditions) if self.config.layer_energies else 0.0
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
            if not self.config.clip_denoised:
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
        overrides = {**dataclasses.asdict(self.config), "distill_steps": int(steps), "sampler": "euler",
                     "steps": int(steps)}  # fmt: skip
        student = type(self)(DiffusionConfig(**overrides), self.geometry, self.condition_names)
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
        grid = samplers.karras_sigmas(2 * cfg.distill_steps, cfg.sigma_min, cfg.sigma_max).to(x0.device)
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
        """Choose the sampler and/or number of steps for later sampling (``sampler=``, ``steps=``)."""
        unknown = set(options) - {"sampler", "steps"}
        if unknown:
            raise ConfigError(f"diffusion: unknown sampling option(s) {sorted(unknown)}; valid: sampler, steps")
        sampler = options.get("sampler") or self.config.sampler
        steps = int(options.get("steps") or self.config.steps)
        _check_sampling(sampler, steps)
        self.config.sampler, self.config.steps = sampler, steps

    def _start_noise(self, conditions: Tensor) -> list[Tensor]:
        """The random inputs other than the ancestral sampler's fresh noise of each step."""
        n, device = conditions.shape[0], conditions.device
        noise = [torch.randn(n, self.geometry.n_voxels, device=device)]
        if self.config.layer_energies:
            noise.append(torch.randn(n, self.geometry.n_layers, device=device))
        for option in (self.config.layer_occupancy, self.config.layer_library):
            if option:  # the occupancy's uniforms, then the library's choices
                noise.append(torch.rand(n, self.geometry.n_layers, device=device))
        return noise

    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        noise = self._start_noise(conditions)
        if self.config.sampler == "ddpm":
            n, v = conditions.shape[0], self.geometry.n_voxels
            noise.append(torch.randn(self.config.steps, n, v, device=conditions.device))
        return tuple(noise)

    def sample_showers(self, conditions: Tensor) -> Tensor:
        # The ancestral sampler draws each step's fresh noise when it needs it: all steps at once
        # would be steps x N x V numbers (17 GB for 10,000 ds2 showers at 64 steps).
        return self.showers_from_noise(conditions, *self._start_noise(conditions))

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        cfg = self.config
        noise = list(noise)
        start = noise.pop(0)
        cond = self.conditions_map(conditions)
        incident = conditions[:, :1].float()
        if cfg.layer_energies:
            flow_noise = noise.pop(0)
            uniform = noise.pop(0) if cfg.layer_occupancy else None
            choice = noise.pop(0) if cfg.layer_library else None
            layer_e = self._sample_layer_energies(cond, incident, flow_noise, uniform)
            cond = torch.cat([cond, self.log_energy_scaler(torch.log10(layer_e + self.cut))], dim=1)
        codes = samplers.sample(
            self.denoiser(cond), start.float(), cfg.steps, cfg.sampler, cfg.sigma_min, cfg.sigma_max,
            ancestral_noise=noise.pop(0) if noise else None,
        )  # fmt: skip
        showers = self.coding.inverse(codes, incident)
        if cfg.layer_energies:  # the first stage decides the layer energies; the voxel model their spread
            # The voxel model's own sub-cut voxels are empty: decoded at the empty code they are
            # rounding residues (~1e-12 MeV), which scaling to a layer energy would make hits.
            showers = self.apply_cut(showers)
            fill = None
            if cfg.library_max_hits:  # the layers the voxel model makes this faint go to the library
                hits = self.decomposition.layer_energies((showers > 0).float())
                showers = torch.where((hits <= cfg.library_max_hits)[:, self.decomposition.voxel_layer], 0.0, showers)
            if self.library is not None:

                def fill(lost: Tensor) -> Tensor:
                    return self.library.patterns(layer_e, incident, lost, choice)

            showers = self.decomposition.compose(layer_e, showers, self.cut, self._hit_preference(codes), fill)
        return showers

    def _hit_preference(self, codes: Tensor) -> Tensor:
        """Which voxel the voxel model holds most likely to be hit: its unclipped log code; among voxels
        snapped to the empty code (which differ only by rounding), the one whose training hits
        are largest (the shower core)."""
        raw = self.coding.unstandardise(codes)
        at_empty = raw.abs() < 1e-3  # a hit is at least log(1 + GAP) above the empty code
        core = self.coding.mean / self.coding.mean.abs().max().clamp_min(1e-30)  # in [-1, 1]
        return torch.where(at_empty, 5e-4 * core.expand_as(raw), raw)  # keeps their place among the others


__all__ = ["DiffusionConfig", "DiffusionSurrogate"]
