"""ParaFlow: one masked autoregressive flow over the crystals, conditioned on the detector's configuration.

After Erdmann et al., "ParaFlow" (the flow that learns how photon showers in a CMS-like crystal
calorimeter change with the material upstream of it; the set-up is in
:mod:`calosurrogate.simulate.paraflow`): crystal energies divided by the incident energy,
dequantised with uniform noise up to 20 keV, logit, standardised, and modelled by a MAF with
rational-quadratic splines (Durkan et al., arXiv:1906.04032; Papamakarios et al.,
arXiv:1705.07057) given the incident energy, the plate's thickness and its distance, each
log-mapped to [-1, 1]. Its density is exact and differentiable in the conditions, which is what
``calo infer`` fits the plate's configuration with.

Train it as ParaFlow did with ``configs/paraflow-paraflow.yaml`` (batch 1000, Adam 1e-3, cosine warm
restarts whose rate halves on plateaus, early stop). Sampling takes one network pass per
crystal and transform: slow beside a coupling flow, fine for the 128 crystals of the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zuko.flows import Flow

from calosurrogate.models.base import register
from calosurrogate.models.components import VoxelFlowSurrogate, autoregressive_spline_flow


@dataclass
class ParaFlowConfig:
    """Settings of the ParaFlow family (defaults: ParaFlow's own).

    Attributes:
        transforms: MADE blocks.
        hidden: Width of each block's two hidden layers.
        bins: Spline bins.
        logit_delta: ``delta`` of the logit preprocessing.
        energy_cut_mev: Sampling cut and training-noise width (None: the geometry's threshold,
            20 keV for the crystal window).
        seed: Seed of the blocks' random orders.
    """

    transforms: int = 10
    hidden: int = 196
    bins: int = 10
    logit_delta: float = 1e-6
    energy_cut_mev: float | None = None
    seed: int = 0


@register("paraflow")
class ParaFlow(VoxelFlowSurrogate):
    """MAF with spline transforms on ``crystals / E_inc`` (see module docstring)."""

    config_class = ParaFlowConfig
    # ParaFlow's dequantisation: uniform noise up to 20 keV on every crystal
    max_training_noise_mev: ClassVar[float] = 0.02
    # The MAF's inverse is one pass per crystal and block; ONNX and torch.export flatten them all.
    refused_exports: ClassVar[dict[str, str]] = {
        fmt: "the autoregressive inverse unrolls into one network pass per crystal and block; use torchscript"
        for fmt in ("onnx", "pt2")
    }

    def build_flow(self, features: int, context: int) -> Flow:
        c = self.config
        return autoregressive_spline_flow(features, context, c.transforms, c.hidden, c.bins, c.seed)
