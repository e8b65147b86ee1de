"""The plain multilayer perceptron the families build on."""

from __future__ import annotations

import itertools

from torch import nn


def mlp(
    in_features: int,
    out_features: int,
    hidden: int,
    n_hidden_layers: int,
    spectral_norm: bool = False,
    activation: type[nn.Module] = nn.SiLU,
    final_bias: bool = True,
) -> nn.Sequential:
    """Fully connected network ``in -> hidden x n_hidden_layers -> out``.

    ``spectral_norm`` constrains every linear map's largest singular value to 1 (Miyato et al.,
    arXiv:1802.05957), the usual Lipschitz aid for GAN critics. ``final_bias=False`` drops the
    output bias where only differences of outputs matter (a Wasserstein critic).
    """
    sizes = [in_features] + [hidden] * n_hidden_layers + [out_features]
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(itertools.pairwise(sizes)):
        linear = nn.Linear(a, b, bias=final_bias or k < len(sizes) - 2)
        layers.append(nn.utils.parametrizations.spectral_norm(linear) if spectral_norm else linear)
        if k < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
