"""The diffusion family's settings: one small config per part (``--set model.PART.KEY=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from calosurrogate.models.base import ConfigError
from calosurrogate.models.diffusion.backbones import BACKBONES
from calosurrogate.models.diffusion.objectives import OBJECTIVES
from calosurrogate.models.diffusion.samplers import SAMPLERS


@dataclass
class ObjectiveConfig:
    """What the backbone is trained to predict (:mod:`~calosurrogate.models.diffusion.objectives`).

    Attributes:
        name: ``"edm"``, ``"spike-slab"`` (EDM whose denoiser is the exact posterior mean of a
            per-voxel spike-and-slab prior the MLP predicts: empty voxels snap to the empty code
            at low noise), ``"ddpm"`` (cosine), ``"v"`` or ``"flow-matching"``.
        sigma_data: EDM's data standard deviation (the codes are standardised: 1).
        p_mean, p_std: EDM's log-normal distribution of training noise levels.
    """

    name: str = "edm"
    sigma_data: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ConfigError(f"objective name must be one of {tuple(OBJECTIVES)}, got {self.name!r}")


@dataclass
class BackboneConfig:
    """The network ``F(x, noise level, conditions)`` (:mod:`~calosurrogate.models.diffusion.backbones`).

    Attributes:
        name: ``"mlp"`` (residual, adaLN), ``"transformer"`` (one token per layer) or ``"unet"``
            (CaloDiffusion's cylindrical U-Net; on irregular geometries through GLaM).
        hidden, blocks: Residual MLP width and depth.
        unet_channels: U-Net channels at full and half resolution.
        unet_attention: Linear attention over all cells at the U-Net's coarse level.
        transformer_dim, transformer_depth: Width and blocks of the layer transformer.
    """

    name: str = "mlp"
    hidden: int = 512
    blocks: int = 4
    unet_channels: tuple[int, int] = (16, 32)
    unet_attention: bool = False
    transformer_dim: int = 128
    transformer_depth: int = 4

    def __post_init__(self) -> None:
        self.unet_channels = tuple(self.unet_channels)
        if self.name not in BACKBONES:
            raise ConfigError(f"backbone name must be one of {tuple(BACKBONES)}, got {self.name!r}")


@dataclass
class FirstStageConfig:
    """The layer-energy first stage (CaloFlow's flow I coding, :class:`~calosurrogate.models.components.LayerDecomposition`).

    Attributes:
        layer_energies: A coupling spline flow over the layer energies (CaloFlow's flow I coding);
            the voxel model is conditioned on them, and sampled showers are composed to the
            sampled layer energies through the energy cut (as CaloDREAM's two-stage generation).
        occupancy: The stage first draws which layers hold energy (an autoregressive Bernoulli),
            then the flow draws only the codes the occupancy leaves free: empty layers stay exactly
            empty instead of receiving a trace of energy.
        library: A layer the stage fills but the voxel model leaves empty takes the hit pattern of
            a faint training layer of similar layer and incident energy
            (:class:`~calosurrogate.models.components.FaintLayerLibrary`).
        library_max_hits: With ``library``, a layer the voxel model gives at most this many hits
            takes a library pattern too (0: only layers left empty).
    """

    layer_energies: bool = False
    occupancy: bool = False
    library: bool = False
    library_max_hits: int = 0

    def __post_init__(self) -> None:
        for option in ("occupancy", "library"):
            if getattr(self, option) and not self.layer_energies:
                raise ConfigError(f"first_stage {option} is part of the layer-energy stage; set layer_energies too")
        if self.library_max_hits and not self.library:
            raise ConfigError("first_stage library_max_hits chooses layers for the library; set library too")
        if self.library_max_hits < 0:
            raise ConfigError(f"first_stage library_max_hits must be at least 0, got {self.library_max_hits}")


@dataclass
class SamplingConfig:
    """The default sampler (:mod:`~calosurrogate.models.diffusion.samplers`); sampler and steps can
    be changed at sampling time.

    Attributes:
        sampler: ``euler`` (= DDIM), ``heun``, ``rk4``, ``dpm2m``, ``ddpm`` (ancestral),
            ``dpm2m-sde`` (ancestral, second order) or ``analytic-ddpm`` (ancestral with the
            measured posterior variance, :mod:`~calosurrogate.models.diffusion.variance`).
        steps: Number of noise levels.
        sigma_min, sigma_max: Noise levels the sampler runs between (standardised codes). A
            ``sigma_max`` a few times the widest voxel's spread of codes is noise enough; steps
            above it are spent on nothing (sigma_max can be changed at sampling time).
        clip_denoised: Clamp every denoised estimate to the per-voxel range of the training codes
            (DDPM's "clip x0": errors of noise predictions, multiplied by the noise level, cannot
            throw the sampler far outside the data).
        compile: Run the denoiser through ``torch.compile``: the same function, its element-wise
            work fused (on a CPU most of a step's time); the first batch pays the compilation
            (tens of seconds), and where compilation fails the eager denoiser runs, with a warning.
    """

    sampler: str = "heun"
    steps: int = 32
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    clip_denoised: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if int(self.steps) < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if not 0 < float(self.sigma_min) < float(self.sigma_max):
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}")


@dataclass
class DiffusionConfig:
    """Settings of the diffusion / flow-matching family, one part each.

    Attributes:
        objective, backbone, first_stage, sampling: The parts' settings (their classes above).
        code_scale: ``"all"``: standardise each voxel's code over all showers; ``"hits"``: with
            the mean and spread of its hits only (:class:`~calosurrogate.models.components.LogEnergyCoding`).
        distill_steps: 0 for an ordinary model; N > 0 for a student of progressive distillation,
            trained to reproduce in N Euler (DDIM) steps what its frozen teacher does in 2N.
        energy_cut_mev: Sampling cut (None: the dataset's threshold).
        seed: Seed of the initial weights.
    """

    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    first_stage: FirstStageConfig = field(default_factory=FirstStageConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    code_scale: str = "all"
    distill_steps: int = 0
    energy_cut_mev: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.code_scale not in ("all", "hits"):
            raise ConfigError(f"code_scale must be 'all' or 'hits', got {self.code_scale!r}")
        if self.objective.name == "spike-slab" and self.backbone.name != "mlp":
            raise ConfigError(f"the spike-slab objective needs the mlp backbone, got {self.backbone.name!r}")


# Format 1 (flat settings) -> format 2: each old key's place, or None where the option was removed
# after it lost its ablation (BENCHMARKS.md), with the value that meant "off".
FORMAT_1_PLACES = {
    "objective": ("objective", "name"), "sigma_data": ("objective", "sigma_data"), "p_mean": ("objective", "p_mean"),
    "p_std": ("objective", "p_std"), "backbone": ("backbone", "name"), "hidden": ("backbone", "hidden"),
    "blocks": ("backbone", "blocks"), "unet_channels": ("backbone", "unet_channels"),
    "unet_attention": ("backbone", "unet_attention"), "transformer_dim": ("backbone", "transformer_dim"),
    "transformer_depth": ("backbone", "transformer_depth"), "layer_energies": ("first_stage", "layer_energies"),
    "layer_occupancy": ("first_stage", "occupancy"), "layer_library": ("first_stage", "library"),
    "library_max_hits": ("first_stage", "library_max_hits"), "sampler": ("sampling", "sampler"),
    "steps": ("sampling", "steps"), "sigma_min": ("sampling", "sigma_min"), "sigma_max": ("sampling", "sigma_max"),
    "clip_denoised": ("sampling", "clip_denoised"),
}  # fmt: skip
FORMAT_1_REMOVED = {"voxel_skip": False, "pointwise_hidden": 0, "low_noise_gate": False, "whitening": "none"}


def config_from_format_1(flat: dict, source: str) -> dict:
    """A format-1 (flat) diffusion config as today's nested one.

    Raises:
        ValueError: The model used an option removed since (``source`` names the file).
    """
    nested: dict = {}
    for key, value in flat.items():
        if key in FORMAT_1_REMOVED:
            if value != FORMAT_1_REMOVED[key]:
                raise ValueError(
                    f"{source}: a format-1 diffusion model with {key} on; that option was removed in format 2 "
                    "after it lost its ablation (BENCHMARKS.md), so this model cannot be loaded"
                )
        elif key == "spike_slab":
            if value:
                nested.setdefault("objective", {})["name"] = "spike-slab"
        elif key in FORMAT_1_PLACES:
            part, name = FORMAT_1_PLACES[key]
            if not (key == "objective" and nested.get("objective", {}).get("name") == "spike-slab"):
                nested.setdefault(part, {})[name] = value
        else:
            nested[key] = value
    return nested
