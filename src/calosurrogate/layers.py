"""Torch layers shared by the model families and the metrics (which must not import models)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CylindricalConv3d(nn.Module):
    """3D convolution over ``(layer, alpha, r)`` images with circular padding along alpha.

    After CaloDiffusion (Amram and Pedro, arXiv:2308.03876): the angular bins of a cylindrical
    shower wrap around, so alpha is padded periodically, while layer and radius are padded with
    zeros (there is nothing before the first layer or beyond the outer radius). Kernel sizes are
    odd so that the output keeps the input's shape.

    Shapes: ``(N, C_in, layers, alpha, r) -> (N, C_out, layers / s_l, alpha / s_a, r / s_r)`` for a
    ``stride`` ``(s_l, s_a, s_r)`` (default 1: the shape is kept).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        if any(size % 2 == 0 for size in k):
            raise ValueError(f"kernel sizes must be odd to keep the image shape, got {k}")
        self.pad = tuple(size // 2 for size in k)
        self.conv = nn.Conv3d(in_channels, out_channels, k, stride=stride, padding=(self.pad[0], 0, self.pad[2]))

    def forward(self, x: Tensor) -> Tensor:
        a = self.pad[1]
        if a:
            x = torch.cat([x[..., -a:, :], x, x[..., :a, :]], dim=-2)
        return self.conv(x)


__all__ = ["CylindricalConv3d"]
