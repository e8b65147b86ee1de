"""The diffusion and flow-matching family, from parts with one job each (after diffusers' split):

- :mod:`.objectives`: what the backbone learns (EDM, spike-and-slab EDM, cosine DDPM,
  v-prediction, flow matching); each gives its loss and its denoiser.
- :mod:`.backbones`: networks ``F(x, noise level, conditions)`` that know no schedule (residual
  MLP, layer transformer, cylindrical U-Net) and :mod:`.glam` (dataset 1's irregular layers on a
  regular grid for the U-Net).
- :mod:`.samplers`: ODE and ancestral samplers over any denoiser, steps chosen at sampling time.
- :mod:`.config`: one small config per part (``--set model.backbone.hidden=256``).
- :mod:`.family`: the wiring behind ``--model diffusion`` (coding, first stage, distillation).
"""

from calosurrogate.models.diffusion.config import (
    BackboneConfig,
    DiffusionConfig,
    FirstStageConfig,
    ObjectiveConfig,
    SamplingConfig,
)
from calosurrogate.models.diffusion.family import DiffusionSurrogate
from calosurrogate.models.diffusion.objectives import OBJECTIVES

__all__ = [
    "OBJECTIVES",
    "BackboneConfig",
    "DiffusionConfig",
    "DiffusionSurrogate",
    "FirstStageConfig",
    "ObjectiveConfig",
    "SamplingConfig",
]
