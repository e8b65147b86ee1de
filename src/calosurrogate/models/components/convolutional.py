"""Cylindrical convolutional encoders and decoders of shower images ``(layer, alpha, r)``."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.layers import CylindricalConv3d
from calosurrogate.models.components.mlp import mlp


class CylindricalConvNet(nn.Module):
    """A stack of cylindrical convolutions with SiLU between them; a condition vector enters
    every block as extra constant channels (the usual way to condition a small conv net).

    Shapes: ``(N, C_in, L, A, R)`` and conditions ``(N, K)`` -> ``(N, C_out, L, A, R)``.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: int, blocks: int, n_conditions: int) -> None:
        super().__init__()
        sizes = [in_channels] + [channels] * blocks
        self.blocks = nn.ModuleList(CylindricalConv3d(a + n_conditions, b) for a, b in itertools.pairwise(sizes))
        self.out = CylindricalConv3d(channels + n_conditions, out_channels, 1)

    def forward(self, x: Tensor, conditions: Tensor) -> Tensor:
        def with_conditions(h: Tensor) -> Tensor:
            c = conditions.to(h.dtype)[:, :, None, None, None].expand(-1, -1, *h.shape[2:])
            return torch.cat([h, c], dim=1)

        for block in self.blocks:
            x = F.silu(block(with_conditions(x)))
        return self.out(with_conditions(x))


def _image_shape(geometry: CylindricalGeometry, conv: tuple[int, int] | None) -> tuple[int, int, int] | None:
    if conv is None:
        return None
    if not geometry.is_regular:
        raise ValueError(
            f"convolutions need a regular geometry (the same alpha x r binning in every layer); {geometry.name!r} "
            "is irregular: use the MLP architecture"
        )
    return geometry.shape


class ShowerEncoder(nn.Module):
    """Coded showers ``(N, V)`` and mapped conditions ``(N, K)`` -> features ``(N, out)``.

    An MLP, or with ``conv = (channels, blocks)`` a :class:`CylindricalConvNet` in front of a
    one-hidden-layer MLP (regular geometries only).
    """

    def __init__(self, geometry: CylindricalGeometry, n_conditions: int, out_features: int, hidden: int,
                 layers: int, conv: tuple[int, int] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.image_shape = _image_shape(geometry, conv)
        self.conv = None if conv is None else CylindricalConvNet(1, 1, conv[0], conv[1], n_conditions)
        self.net = mlp(geometry.n_voxels + n_conditions, out_features, hidden, layers if conv is None else 1)

    def forward(self, codes: Tensor, conditions: Tensor) -> Tensor:
        if self.conv is not None:
            codes = self.conv(codes.reshape(-1, 1, *self.image_shape), conditions).flatten(1)
        return self.net(torch.cat([codes, conditions.to(codes.dtype)], dim=1))


class ShowerDecoder(nn.Module):
    """Latents ``(N, Z)`` and mapped conditions ``(N, K)`` -> per-voxel parameters ``(N, V, P)``, float32.

    An MLP, or with ``conv = (channels, blocks)`` a one-hidden-layer MLP to ``channels`` images
    refined by a :class:`CylindricalConvNet`.
    """

    def __init__(self, geometry: CylindricalGeometry, n_conditions: int, latent: int, n_params: int, hidden: int,
                 layers: int, conv: tuple[int, int] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.n_params = n_params
        self.image_shape = _image_shape(geometry, conv)
        if conv is None:
            self.net = mlp(latent + n_conditions, geometry.n_voxels * n_params, hidden, layers)
            self.conv = None
        else:
            self.channels = conv[0]
            self.net = mlp(latent + n_conditions, geometry.n_voxels * conv[0], hidden, 1)
            self.conv = CylindricalConvNet(conv[0], n_params, conv[0], conv[1], n_conditions)

    def forward(self, latents: Tensor, conditions: Tensor) -> Tensor:
        h = self.net(torch.cat([latents, conditions.to(latents.dtype)], dim=1))
        if self.conv is None:
            return h.float().unflatten(1, (-1, self.n_params))
        h = self.conv(h.unflatten(1, (self.channels, *self.image_shape)), conditions)
        return h.float().flatten(2).transpose(1, 2)
