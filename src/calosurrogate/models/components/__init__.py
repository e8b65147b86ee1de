"""Pieces several surrogate families are built from (families never import each other).

- :mod:`~.consistency`: flow matching and its consistency distillation to one step.
- :mod:`~.flows`: normalizing-flow builders (spline coupling and autoregressive flows on zuko).
- :mod:`~.mlp`: the plain multilayer perceptron.
- :mod:`~.occupancy`: which layers hold energy (an autoregressive Bernoulli).
- :mod:`~.convolutional`: cylindrical convolutional encoders and decoders of shower images.
- :mod:`~.codings`: voxel codings (log energy with an empty code) and the hurdle likelihood.
- :mod:`~.layer_energies`: a shower as layer energies and shapes, the layer-energy first stage
  (CaloFlow's flow I, used by the flow and diffusion families) and the faint-layer library.
- :mod:`~.voxel_flow`: one flow over every voxel on ``voxels / E_inc`` (the inn and paraflow families).
"""

from calosurrogate.models.components.codings import HurdleLikelihood, LogEnergyCoding
from calosurrogate.models.components.convolutional import CylindricalConvNet, ShowerDecoder, ShowerEncoder
from calosurrogate.models.components.flows import (
    FloatOutput,
    SplineTransform,
    autoregressive_spline_flow,
    coupling_spline_flow,
    flow_from_noise,
    flow_log_prob,
    spline_shapes,
)
from calosurrogate.models.components.layer_energies import FaintLayerLibrary, LayerDecomposition, LayerEnergyStage
from calosurrogate.models.components.mlp import mlp
from calosurrogate.models.components.occupancy import AutoregressiveBernoulli
from calosurrogate.models.components.voxel_flow import VoxelFlowSurrogate

__all__ = [
    "AutoregressiveBernoulli",
    "CylindricalConvNet",
    "FaintLayerLibrary",
    "FloatOutput",
    "HurdleLikelihood",
    "LayerDecomposition",
    "LayerEnergyStage",
    "LogEnergyCoding",
    "ShowerDecoder",
    "ShowerEncoder",
    "SplineTransform",
    "VoxelFlowSurrogate",
    "autoregressive_spline_flow",
    "coupling_spline_flow",
    "flow_from_noise",
    "flow_log_prob",
    "mlp",
    "spline_shapes",
]
