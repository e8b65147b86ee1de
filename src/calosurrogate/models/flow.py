"""CaloFlow: a two-stage normalizing-flow surrogate.

Krause and Shih, "CaloFlow: fast and accurate generation of calorimeter showers with
normalizing flows", arXiv:2106.05285, and "CaloFlow II", arXiv:2110.11377.

- Flow I learns the layer energies given the conditions (MAF with rational-quadratic
  splines; the layer energies are coded in ``[0, 1]`` as in CaloFlow, then logit + standardised).
- Flow II learns the normalised shower (each layer's voxels divided by the layer energy) given
  the conditions and the layer energies. For small showers (dataset 1) it is one flow over
  all voxels, autoregressive (the CaloFlow "teacher") or coupling (the fast-sampling
  variant). For large regular showers (datasets 2 and 3) it is a per-layer flow with weights
  shared across layers, told which layer it models by a learned embedding (as layer-wise
  models such as L2LFlows, arXiv:2302.11594, do), so its size does not grow with depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from calosurrogate.data.transforms import Logit, Standardize
from calosurrogate.models.base import ConfigError, Surrogate, register
from calosurrogate.models.components import (
    LayerEnergyStage,
    autoregressive_spline_flow,
    coupling_spline_flow,
    flow_from_noise,
    flow_log_prob,
)

# Flow I samples with one network pass per layer when autoregressive: cheap for dataset 1's
# 5 layers, 45 passes for dataset 2's.
AUTOREGRESSIVE_MAX_LAYERS = 10


@dataclass
class CaloFlowConfig:
    """Settings of the CaloFlow family.

    Attributes:
        energy_flow: ``"coupling"`` (fast sampling), ``"autoregressive"`` (MAF, the CaloFlow
            teacher; sampling takes one network pass per layer) or ``"auto"`` (autoregressive up
            to ``AUTOREGRESSIVE_MAX_LAYERS`` layers, coupling beyond; on ds1-photons the MAF separates
            less from the reference at equal sampling time: BENCHMARKS.md, flow (maf)).
        energy_transforms, energy_hidden, energy_bins: Flow I (layer energies) size.
        shape_flow: ``"autoregressive"`` (the CaloFlow teacher: exact, but sampling takes one
            network pass per voxel), ``"coupling"`` (fast sampling), ``"per_layer"`` (shared
            per-layer coupling flow, regular geometries) or ``"auto"`` (coupling for irregular
            or small showers, per-layer for large regular ones).
        shape_transforms, shape_hidden, shape_bins: Flow II size; ``shape_bins = 0`` means affine
            couplings. None picks by layout: per-layer, 8 affine transforms of width 128 (thousands
            of voxels make splines costly on a CPU); otherwise 6 spline transforms with 8 bins,
            width 256 (a little better than 128 on ds1-photons for a little more time per shower:
            BENCHMARKS.md, flow (hidden128), flow (hidden256)).
        layer_embedding: Size of the learned layer embedding (per-layer flow II).
        logit_delta: ``delta`` of the logit preprocessing.
        energy_cut_mev: Voxels below this are zeroed after sampling, and it bounds the width of
            the training noise (None: the dataset's evaluation threshold).
        seed: Seed of the fixed random masks and orders.
    """

    energy_flow: str = "auto"
    energy_transforms: int = 8
    energy_hidden: int = 128
    energy_bins: int = 8
    shape_flow: str = "auto"
    shape_transforms: int | None = None
    shape_hidden: int | None = None
    shape_bins: int | None = None
    layer_embedding: int = 8
    logit_delta: float = 1e-6
    energy_cut_mev: float | None = None
    seed: int = 0


@register("flow")
class CaloFlow(Surrogate):
    """Two-stage flow: layer energies, then normalised shower shapes (see module docstring)."""

    config_class = CaloFlowConfig

    def __init__(self, config: CaloFlowConfig, geometry, condition_names) -> None:
        super().__init__(config, geometry, condition_names)
        kind = config.shape_flow
        if kind == "auto":
            kind = "coupling" if geometry.n_voxels <= 600 or not geometry.is_regular else "per_layer"
        if kind not in ("autoregressive", "coupling", "per_layer"):
            raise ConfigError(
                f"shape_flow must be auto, autoregressive, coupling or per_layer, got {config.shape_flow!r}"
            )
        if kind == "per_layer" and not geometry.is_regular:
            raise ConfigError(f"shape_flow 'per_layer' needs layers of equal binning; {geometry.name} has not")
        self.shape_kind = kind
        n_layers, c = geometry.n_layers, len(condition_names)
        self.conditions_map = self.new_condition_map()
        self.logit = Logit(config.logit_delta)
        energy_kind = config.energy_flow
        if energy_kind == "auto":
            energy_kind = "autoregressive" if n_layers <= AUTOREGRESSIVE_MAX_LAYERS else "coupling"
        if energy_kind not in ("coupling", "autoregressive"):
            raise ConfigError(f"energy_flow must be auto, coupling or autoregressive, got {config.energy_flow!r}")
        energy_builder = coupling_spline_flow if energy_kind == "coupling" else autoregressive_spline_flow
        flow_i = energy_builder(
            n_layers, c, config.energy_transforms, config.energy_hidden, config.energy_bins, config.seed
        )
        self.first_stage = LayerEnergyStage(geometry.layer_offsets.tolist(), flow_i, c, config.logit_delta)
        per_layer = kind == "per_layer"
        bins = config.shape_bins if config.shape_bins is not None else (0 if per_layer else 8)
        transforms = config.shape_transforms if config.shape_transforms is not None else (8 if per_layer else 6)
        hidden = config.shape_hidden if config.shape_hidden is not None else (128 if per_layer else 256)
        if bins == 0 and kind == "autoregressive":
            raise ConfigError("shape_bins = 0 (affine) is for coupling flows; give the autoregressive flow spline bins")
        shape_context = c + n_layers
        if per_layer:
            self.layer_embedding = nn.Embedding(n_layers, config.layer_embedding)
            features, shape_context = geometry.layers[0].n_voxels, shape_context + config.layer_embedding
            build = coupling_spline_flow
        else:
            features = geometry.n_voxels
            build = autoregressive_spline_flow if kind == "autoregressive" else coupling_spline_flow
        self.shape_scaler = Standardize(features)
        self.shape_flow = build(features, shape_context, transforms, hidden, bins, config.seed + 1)

    # --------------------------------------------------------------- preprocessing

    def _encode(self, showers: Tensor, conditions: Tensor) -> tuple[Tensor, Tensor]:
        """Layer energies (MeV) and logit shapes of showers, each ``(N, L)`` and ``(N, V)``."""
        layer_e = self.first_stage.decomposition.layer_energies(showers)
        return layer_e, self.logit(self.first_stage.decomposition.shapes(showers, layer_e))

    def _shape_rows(self, shapes: Tensor) -> Tensor:
        if self.shape_kind == "per_layer":
            return shapes.reshape(len(shapes) * self.geometry.n_layers, -1)
        return shapes

    @torch.no_grad()
    def fit_preprocessing(self, showers: Tensor, conditions: Tensor) -> None:
        self.conditions_map.fit(conditions)
        layer_e, shapes = self._encode(showers, conditions)
        self.first_stage.fit(layer_e, conditions[:, :1], self.cut)
        self.shape_scaler.fit(self._shape_rows(shapes))
        self._fitted.fill_(True)

    def _shape_context(self, mapped: Tensor, log_e_std: Tensor) -> Tensor:
        context = torch.cat([mapped, log_e_std], dim=1)
        if self.shape_kind != "per_layer":
            return context
        # Broadcasting, not Python ints of the batch size, so that exported graphs keep a dynamic batch.
        n_layers = self.geometry.n_layers
        per_shower = context.unsqueeze(1).expand(-1, n_layers, -1)
        layers = self.layer_embedding.weight.unsqueeze(0).expand(context.shape[0], -1, -1)
        return torch.cat([per_shower, layers], dim=2).flatten(0, 1)

    # ---------------------------------------------------------------- training
    def loss(self, showers: Tensor, conditions: Tensor) -> Tensor:
        (layer_e, shapes), mapped = self._encode(showers, conditions), self.conditions_map(conditions)
        nll_energy = self.first_stage.nll(layer_e, conditions[:, :1], mapped)
        rows = self.shape_scaler(self._shape_rows(shapes))
        context = self._shape_context(mapped, self.first_stage.context(layer_e, self.cut))
        nll_shape = -flow_log_prob(self.shape_flow, rows, context)
        if self.shape_kind == "per_layer":
            nll_shape = nll_shape.reshape(len(showers), -1).sum(1)
        return (nll_energy + nll_shape) / self.geometry.n_voxels

    # ---------------------------------------------------------------- sampling
    def sample_noise(self, conditions: Tensor) -> tuple[Tensor, ...]:
        n, device = len(conditions), conditions.device
        rows = n * self.geometry.n_layers if self.shape_kind == "per_layer" else n
        return (
            torch.randn(n, self.geometry.n_layers, device=device),
            torch.randn(rows, self.shape_scaler.mean.numel(), device=device),
        )

    def showers_from_noise(self, conditions: Tensor, *noise: Tensor) -> Tensor:
        mapped = self.conditions_map(conditions)
        layer_e = self.first_stage.sample(mapped, conditions[:, :1].float(), noise[0])
        context = self._shape_context(mapped, self.first_stage.context(layer_e, self.cut))
        rows = flow_from_noise(self.shape_flow, context, noise[1])
        shapes = self.logit.inverse(self.shape_scaler.inverse(rows)).reshape(-1, self.geometry.n_voxels)
        return self.first_stage.decomposition.compose(layer_e, shapes)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, assign: bool = False):
        # Models saved before flow I became the shared first stage hold its entries at the top level.
        return super().load_state_dict(LayerEnergyStage.moved_keys(state_dict, "first_stage."), strict, assign)
