"""CaloINN-style surrogate: one coupling spline flow over the whole shower.

After Ernst, Favaro, Krause, Plehn and Shih, "Normalizing flows for high-dimensional
detector simulations", arXiv:2312.09290 (CaloINN): voxels divided by the incident energy,
logit, standardised, and modelled by a conditional coupling flow with rational-quadratic
splines, so that sampling is one network pass per transform. Best suited to showers of a
few hundred voxels (dataset 1); its size grows with the voxel count.
"""

from __future__ import annotations

from dataclasses import dataclass

from zuko.flows import Flow

from calosurrogate.models.base import register
from calosurrogate.models.components import VoxelFlowSurrogate, coupling_spline_flow


@dataclass
class CaloINNConfig:
    """Settings of the CaloINN family.

    Attributes:
        transforms, hidden, bins: Coupling flow size.
        logit_delta: ``delta`` of the logit preprocessing.
        energy_cut_mev: Sampling cut and training-noise width (None: the dataset's threshold).
        seed: Seed of the fixed random masks.
    """

    transforms: int = 8
    hidden: int = 256
    bins: int = 8
    logit_delta: float = 1e-6
    energy_cut_mev: float | None = None
    seed: int = 0


@register("inn")
class CaloINN(VoxelFlowSurrogate):
    """Coupling spline flow on ``voxels / E_inc`` (see module docstring)."""

    config_class = CaloINNConfig

    def build_flow(self, features: int, context: int) -> Flow:
        c = self.config
        return coupling_spline_flow(features, context, c.transforms, c.hidden, c.bins, c.seed)
