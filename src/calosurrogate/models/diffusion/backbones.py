"""Backbones of the diffusion and flow-matching family: networks ``F(x, noise level, conditions)``.

- :class:`ResidualMLP`: residual blocks with adaptive layer norm (scale and shift from the noise
  level and condition embedding, as the adaLN of DiT, Peebles and Xie, arXiv:2212.09748); any
  geometry, the fast choice on a CPU.
- :class:`LayerTransformer`: one token per layer, attention across layers, adaLN conditioning
  (CaloDREAM's transformer backbone); any geometry.
- :class:`CylindricalUNet`: CaloDiffusion's conditional 3D U-Net over ``(layer, alpha, r)``
  (Amram and Pedro, arXiv:2308.03876): cylindrical convolutions (circular in alpha), location
  channels (layer index and radius as extra input images), residual blocks that add the
  embedding, one down/up-sampling level over layers and alpha, and optional linear attention
  over all cells at the coarse level. Regular geometries only.

All take flat showers ``(N, V)``, a noise-level scalar per shower ``(N,)`` and mapped
conditions ``(N, K)``, and return ``(N, V)`` in float32 (:class:`SpikeSlabMLP`: ``(N, V, 3)``, a
per-voxel prior). They know no noise schedule: the objectives (:mod:`.objectives`) precondition
their inputs and read their outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calosurrogate.geometry import CylindricalGeometry
from calosurrogate.layers import CylindricalConv3d


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 1e4) -> Tensor:
    """Transformer-style sinusoidal features of scalars ``(N,) -> (N, dim)`` (Vaswani et al., arXiv:1706.03762)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = 1000.0 * values.float().reshape(-1, 1) * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class ConditionEmbedding(nn.Module):
    """Noise level and conditions -> one embedding vector ``(N, dim)``."""

    def __init__(self, n_conditions: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim + n_conditions, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, noise_level: Tensor, conditions: Tensor) -> Tensor:
        features = torch.cat([sinusoidal_embedding(noise_level, self.dim), conditions.float()], dim=1)
        return self.net(features)


class _AdaLNBlock(nn.Module):
    def __init__(self, hidden: int, embed: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(embed, 3 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        nn.init.zeros_(self.modulation.weight)  # every block starts as the identity (DiT's adaLN-zero)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, h: Tensor, embedding: Tensor) -> Tensor:
        shift, scale, gate = self.modulation(embedding).chunk(3, dim=1)
        return h + gate * self.mlp(self.norm(h) * (1 + scale) + shift)


class ResidualMLP(nn.Module):
    """Residual MLP with adaptive layer norm (see module docstring): ``(N, V) -> (N, V)``.

    A learned multiple of the input, a function of the noise level and conditions, is added to
    the output (it starts at 0): it lets a network narrower than the shower represent "output ~
    input", which noise and v prediction need at high noise (EDM's c_skip, learned).
    """

    outputs_per_voxel = 1

    def __init__(self, n_voxels: int, n_conditions: int, hidden: int = 512, blocks: int = 4) -> None:
        super().__init__()
        self.embedding = ConditionEmbedding(n_conditions, min(hidden, 256))
        self.inp = nn.Linear(n_voxels, hidden)
        self.blocks = nn.ModuleList(_AdaLNBlock(hidden, min(hidden, 256)) for _ in range(blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, self.outputs_per_voxel * n_voxels))
        self._init_output(n_voxels)

    def _init_output(self, n_voxels: int) -> None:
        self.skip = nn.Linear(min(self.inp.out_features, 256), 1)
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)

    def _features(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.embedding(noise_level, conditions)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, embedding)
        return self.out(h), embedding

    def forward(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> Tensor:
        out, embedding = self._features(x, noise_level, conditions)
        return (out + self.skip(embedding) * x).float()


class SpikeSlabMLP(ResidualMLP):
    """The residual MLP predicting, per voxel, a spike-and-slab prior: ``(N, V) -> (N, V, 3)`` (the
    logit of the empty-voxel weight, the slab mean, its raw width), which
    :class:`~calosurrogate.models.diffusion.objectives.SpikeSlabEDM` turns into the exact posterior mean."""

    outputs_per_voxel = 3

    def _init_output(self, n_voxels: int) -> None:
        # Every voxel starts at an even spike weight and a unit-width slab at 0 (the codes are standardised).
        bias = self.out[1].bias.detach().view(3, n_voxels)
        bias[0].zero_()
        bias[1].zero_()
        bias[2].fill_(math.log(math.e - 1))

    def forward(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> Tensor:
        out, _ = self._features(x, noise_level, conditions)
        return out.float().unflatten(1, (3, -1)).transpose(1, 2)


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, embed: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.modulation = nn.Linear(embed, 6 * dim)
        nn.init.zeros_(self.modulation.weight)  # adaLN-zero: every block starts as the identity
        nn.init.zeros_(self.modulation.bias)

    def forward(self, tokens: Tensor, embedding: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(embedding).unsqueeze(1).chunk(6, dim=2)
        h = self.norm1(tokens) * (1 + scale1) + shift1
        tokens = tokens + gate1 * self.attention(h, h, h, need_weights=False)[0]
        h = self.norm2(tokens) * (1 + scale2) + shift2
        return tokens + gate2 * self.mlp(h)


class LayerTransformer(nn.Module):
    """Transformer over the calorimeter layers, one token per layer (CaloDREAM-style patches,
    Favaro et al., arXiv:2405.09629), conditioned by adaptive layer norm (DiT, arXiv:2212.09748).

    Each layer's voxels are embedded by their own linear map, so layers of different binnings
    (dataset 1) are fine; a learned position embedding tells the layers apart. Attention lets
    every layer see every other, which is how longitudinal correlations are learned.
    """

    def __init__(self, geometry: CylindricalGeometry, n_conditions: int, dim: int = 128, depth: int = 4,
                 heads: int = 4) -> None:  # fmt: skip
        super().__init__()
        self.slices = [geometry.layer_slice(i) for i in range(geometry.n_layers)]
        self.embedding = ConditionEmbedding(n_conditions, dim)
        self.inp = nn.ModuleList(nn.Linear(layer.n_voxels, dim) for layer in geometry.layers)
        self.position = nn.Parameter(0.02 * torch.randn(geometry.n_layers, dim))
        self.blocks = nn.ModuleList(_TransformerBlock(dim, heads, dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.ModuleList(nn.Linear(dim, layer.n_voxels) for layer in geometry.layers)
        self.skip = nn.Linear(dim, 1)  # as ResidualMLP: a learned multiple of the input, starting at 0
        nn.init.zeros_(self.skip.weight)
        nn.init.zeros_(self.skip.bias)

    def forward(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> Tensor:
        embedding = self.embedding(noise_level, conditions)
        tokens = torch.stack([proj(x[:, s]) for proj, s in zip(self.inp, self.slices, strict=True)], dim=1)
        tokens = tokens + self.position.to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens, embedding)
        tokens = self.norm(tokens)
        out = torch.cat([proj(tokens[:, i]) for i, proj in enumerate(self.out)], dim=1)
        return (out + self.skip(embedding) * x).float()


class _ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, embed: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, channels_in), channels_in)
        self.conv1 = CylindricalConv3d(channels_in, channels_out)
        self.embed = nn.Linear(embed, channels_out)
        self.norm2 = nn.GroupNorm(min(8, channels_out), channels_out)
        self.conv2 = CylindricalConv3d(channels_out, channels_out)
        self.skip = nn.Conv3d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(embedding)[:, :, None, None, None].to(h.dtype)
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class LinearAttention3d(nn.Module):
    """Residual linear attention over every cell of a ``(N, C, L, A, R)`` image.

    Attention whose cost grows linearly with the number of cells (Shen et al., "Efficient
    attention", arXiv:1812.01243; the form CaloDiffusion's U-Net uses): queries are normalised
    over features, keys over cells, and each head's ``d x d`` context ``sum_cells k v^T`` is read
    out by the queries, so a cell sees the whole shower without an ``(LAR)^2`` attention matrix.
    The output projection starts at zero: the block begins as the identity.

    Args:
        channels: Image channels ``C``.
        heads, head_dim: Attention heads and their width.
    """

    def __init__(self, channels: int, heads: int = 4, head_dim: int = 16) -> None:
        super().__init__()
        self.heads, self.scale = heads, head_dim**-0.5
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv3d(channels, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv3d(heads * head_dim, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (t.unflatten(1, (self.heads, -1)) for t in self.qkv(self.norm(x)).flatten(2).chunk(3, dim=1))
        q = q.softmax(dim=2) * self.scale  # (N, heads, d, cells)
        k = k.softmax(dim=3)
        context = torch.einsum("nhdp,nhep->nhde", k, v)
        attended = torch.einsum("nhde,nhdp->nhep", context, q).flatten(1, 2).unflatten(2, x.shape[2:])
        return x + self.out(attended)


class CylindricalUNet(nn.Module):
    """Conditional cylindrical 3D U-Net (see module docstring).

    Args:
        geometry: A regular geometry (same alpha x r binning in every layer).
        n_conditions: Width of the mapped condition vector.
        channels: Channels at full and at half resolution.
        attention: Linear attention over all cells at the half-resolution level.
    """

    def __init__(
        self,
        geometry: CylindricalGeometry,
        n_conditions: int,
        channels: tuple[int, int] = (16, 32),
        attention: bool = False,
    ) -> None:
        super().__init__()
        if not geometry.is_regular:
            raise ValueError(
                f"the U-Net needs a regular geometry; {geometry.name!r} is irregular (its layers differ in "
                "binning): use backbone 'mlp'"
            )
        self.shape = geometry.shape
        n_layers, _, n_r = self.shape
        layer_image = torch.linspace(-1, 1, n_layers).reshape(n_layers, 1, 1).expand(self.shape)
        r_mid = torch.as_tensor(geometry.layers[0].r_mid, dtype=torch.float32)
        radius_image = (r_mid / r_mid.max()).reshape(1, 1, n_r).expand(self.shape)
        self.register_buffer("location", torch.stack([layer_image, radius_image]).clone())  # (2, L, A, R)
        c1, c2 = channels
        embed = 4 * c1
        self.embedding = ConditionEmbedding(n_conditions, embed)
        self.inp = CylindricalConv3d(3, c1)
        self.down1 = _ResBlock(c1, c1, embed)
        self.down2 = _ResBlock(c1, c2, embed)
        self.middle = _ResBlock(c2, c2, embed)
        self.attention = LinearAttention3d(c2) if attention else nn.Identity()
        self.up2 = _ResBlock(2 * c2, c1, embed)
        self.up1 = _ResBlock(2 * c1, c1, embed)
        self.out = CylindricalConv3d(c1, 1)
        nn.init.zeros_(self.out.conv.weight)
        nn.init.zeros_(self.out.conv.bias)

    def forward(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> Tensor:
        embedding = self.embedding(noise_level, conditions)
        image = x.unflatten(1, (1, *self.shape))
        location = self.location.to(image.dtype).unsqueeze(0).expand(image.shape[0], -1, -1, -1, -1)
        h1 = self.down1(self.inp(torch.cat([image, location], dim=1)), embedding)
        # Halve layers and alpha (radius bins are few and unequal in size: kept).
        h2 = self.down2(F.avg_pool3d(h1, (2, 2, 1), ceil_mode=True), embedding)
        h = self.up2(torch.cat([self.attention(self.middle(h2, embedding)), h2], dim=1), embedding)
        h = F.interpolate(h, size=self.shape, mode="nearest")
        h = self.up1(torch.cat([h, h1], dim=1), embedding)
        return self.out(F.silu(h)).flatten(1).float()


def _mlp(geometry: CylindricalGeometry, n_conditions: int, settings: Any, outputs_per_voxel: int) -> nn.Module:
    mlp = SpikeSlabMLP if outputs_per_voxel == 3 else ResidualMLP
    return mlp(geometry.n_voxels, n_conditions, settings.hidden, settings.blocks)


def _transformer(geometry: CylindricalGeometry, n_conditions: int, settings: Any, outputs_per_voxel: int) -> nn.Module:
    return LayerTransformer(geometry, n_conditions, settings.transformer_dim, settings.transformer_depth)


def _unet(geometry: CylindricalGeometry, n_conditions: int, settings: Any, outputs_per_voxel: int) -> nn.Module:
    if geometry.is_regular:
        return CylindricalUNet(geometry, n_conditions, settings.unet_channels, settings.unet_attention)
    # Irregular layers (dataset 1): convolve on GLaM's regular grid.
    from calosurrogate.models.diffusion.glam import GeometryLatentMap, GridBackbone

    glam = GeometryLatentMap(geometry)
    return GridBackbone(glam, CylindricalUNet(glam.latent_geometry, n_conditions, settings.unet_channels,
                                              settings.unet_attention))  # fmt: skip


BackboneBuilder = Callable[[CylindricalGeometry, int, Any, int], nn.Module]
BACKBONES: dict[str, BackboneBuilder] = {"mlp": _mlp, "transformer": _transformer, "unet": _unet}
"""``name -> build(geometry, n_conditions, settings, outputs_per_voxel)``: a new backbone is a class
above and one entry here (settings: :class:`~calosurrogate.models.diffusion.config.BackboneConfig`)."""


__all__ = [
    "BACKBONES",
    "ConditionEmbedding",
    "CylindricalUNet",
    "LayerTransformer",
    "LinearAttention3d",
    "ResidualMLP",
    "SpikeSlabMLP",
    "sinusoidal_embedding",
]
