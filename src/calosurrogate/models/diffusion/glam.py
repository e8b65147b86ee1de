"""GLaM: geometry latent mapping from an irregular cylindrical binning to a regular grid.

After CaloDiffusion (Amram and Pedro, arXiv:2308.03876, section 3.3): convolutions need every
layer on the same ``(alpha, r)`` grid, which dataset 1 does not have (its layers differ in radial
edges and angular bins). GLaM gives each layer a learnable linear map to a common grid and one
back. Here the grid has the largest angular binning of any layer and the union of all layers'
radial edges; the forward map starts as the area overlap of each voxel with each grid cell
divided by the voxel's area (so a voxel's energy is spread over the cells it covers and the
layer energy is conserved), the inverse as its pseudo-inverse (exact round trip at start, since
every voxel is a union of grid cells). Both are trained with the rest of the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer


def regular_grid(geometry: CylindricalGeometry) -> CylindricalGeometry:
    """The common grid: per layer, the union of every layer's radial edges and the largest n_alpha."""
    edges = tuple(float(e) for e in np.unique(np.concatenate([np.asarray(layer.r_edges) for layer in geometry.layers])))
    n_alpha = max(layer.n_alpha for layer in geometry.layers)
    layers = tuple(CylindricalLayer(layer.layer_id, edges, n_alpha) for layer in geometry.layers)
    return CylindricalGeometry(f"{geometry.name}-grid", geometry.particle, layers)


def _overlap_fractions(layer: CylindricalLayer, cell: CylindricalLayer) -> np.ndarray:
    """``(cells, voxels)`` fraction of each voxel's area inside each grid cell (alpha-major order)."""

    def bins(n_alpha: int, r_edges) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        a_edges = np.linspace(-np.pi, np.pi, n_alpha + 1)
        r = np.asarray(r_edges, dtype=float)
        a_lo, r_lo = np.meshgrid(a_edges[:-1], r[:-1], indexing="ij")
        a_hi, r_hi = np.meshgrid(a_edges[1:], r[1:], indexing="ij")
        return a_lo.ravel(), a_hi.ravel(), r_lo.ravel(), r_hi.ravel()

    va0, va1, vr0, vr1 = bins(layer.n_alpha, layer.r_edges)
    ca0, ca1, cr0, cr1 = bins(cell.n_alpha, cell.r_edges)
    angle = np.clip(np.minimum(ca1[:, None], va1[None]) - np.maximum(ca0[:, None], va0[None]), 0, None)
    r_lo, r_hi = np.maximum(cr0[:, None], vr0[None]), np.minimum(cr1[:, None], vr1[None])
    ring = np.clip(r_hi**2 - r_lo**2, 0, None) * (r_hi > r_lo)
    overlap = 0.5 * angle * ring
    voxel_area = 0.5 * (va1 - va0) * (vr1**2 - vr0**2)
    return overlap / voxel_area[None]


class GeometryLatentMap(nn.Module):
    """Learnable per-layer maps between a geometry's voxels and a regular grid (see module docstring).

    Shapes: :meth:`encode` ``(N, V) -> (N, L * A * R)`` (flat grid images, layer-major),
    :meth:`decode` the reverse. ``latent_geometry`` is the regular grid, for the U-Net.
    """

    def __init__(self, geometry: CylindricalGeometry) -> None:
        super().__init__()
        self.latent_geometry = regular_grid(geometry)
        self.layer_slices = [geometry.layer_slice(i) for i in range(geometry.n_layers)]
        self.cells_per_layer = self.latent_geometry.layers[0].n_voxels
        forward, inverse = [], []
        for layer, cell in zip(geometry.layers, self.latent_geometry.layers, strict=True):
            fractions = _overlap_fractions(layer, cell)
            forward.append(nn.Parameter(torch.as_tensor(fractions, dtype=torch.float32)))
            inverse.append(nn.Parameter(torch.as_tensor(np.linalg.pinv(fractions), dtype=torch.float32)))
        self.forward_maps = nn.ParameterList(forward)
        self.inverse_maps = nn.ParameterList(inverse)

    def encode(self, voxels: Tensor) -> Tensor:
        """Voxel values ``(N, V)`` -> grid values ``(N, L * A * R)``."""
        parts = [voxels[:, s] @ m.T.to(voxels.dtype) for s, m in zip(self.layer_slices, self.forward_maps, strict=True)]
        return torch.cat(parts, dim=1)

    def decode(self, grid: Tensor) -> Tensor:
        """Grid values ``(N, L * A * R)`` -> voxel values ``(N, V)``."""
        cells = grid.unflatten(1, (len(self.layer_slices), self.cells_per_layer))
        parts = [cells[:, i] @ m.T.to(grid.dtype) for i, m in enumerate(self.inverse_maps)]
        return torch.cat(parts, dim=1)


class GridBackbone(nn.Module):
    """Run a grid network (``F(x, level, conditions)`` on the regular grid) on irregular voxels via GLaM."""

    def __init__(self, glam: GeometryLatentMap, net: nn.Module) -> None:
        super().__init__()
        self.glam = glam
        self.net = net

    def forward(self, x: Tensor, noise_level: Tensor, conditions: Tensor) -> Tensor:
        return self.glam.decode(self.net(self.glam.encode(x), noise_level, conditions)).float()


__all__ = ["GeometryLatentMap", "GridBackbone", "regular_grid"]
