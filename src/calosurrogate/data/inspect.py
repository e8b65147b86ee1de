"""One streamed pass over a shower file: what a person checks before using it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from calosurrogate.data.hdf5 import NegativePolicy, ShowerFile
from calosurrogate.geometry import CylindricalGeometry, geometries_with_voxels


@dataclass
class FileSummary:
    """What :func:`inspect_file` found.

    Energies in MeV; ``sparsity`` is the fraction of voxels equal to zero; ``layer_mean_energy``
    the mean energy per relevant layer (MeV), present when a geometry is known. Statistics of
    a file with no showers are None (null in JSON), never infinite.
    """

    path: str
    n_showers: int
    n_voxels: int
    dtype: str
    matching_geometries: list[str]
    geometry: str | None
    incident_energy_min: float | None
    incident_energy_max: float | None
    energy_ratio_mean: float | None
    sparsity: float | None
    negative_values: int
    extra_datasets: list[str]
    layer_mean_energy: list[float] | None

    def to_dict(self) -> dict[str, object]:
        """Plain-dict form, for JSON."""
        return asdict(self)

    def to_text(self) -> str:
        """A short human-readable report."""
        lines = [
            f"file            {self.path}",
            f"showers         {self.n_showers}",
            f"voxels          {self.n_voxels} ({self.dtype}); built-in geometries with this count: "
            + (", ".join(self.matching_geometries) or "none"),
            f"geometry        {self.geometry or 'not given'}",
        ]
        if self.n_showers == 0:
            lines.append("statistics      none: the file holds no showers")
        else:
            lines += [
                f"E_inc range     {self.incident_energy_min:.6g} - {self.incident_energy_max:.6g} MeV",
                f"<E_tot/E_inc>   {self.energy_ratio_mean:.4f}",
                f"sparsity        {self.sparsity:.3f} (fraction of zero voxels)",
            ]
        lines += [
            f"negative values {self.negative_values}",
            f"extra datasets  {', '.join(self.extra_datasets) or 'none'}",
        ]
        if self.layer_mean_energy is not None:
            lines.append("mean energy per layer (MeV):")
            lines += [f"  layer {i:3d}  {e:12.3f}" for i, e in enumerate(self.layer_mean_energy)]
        return "\n".join(lines)


def inspect_file(
    path: str | os.PathLike[str],
    geometry: CylindricalGeometry | None = None,
    chunk_size: int = 5000,
    progress: bool = False,
) -> FileSummary:
    """Stream through a file once and summarise it (see :class:`FileSummary`).

    NaN/inf still raise (with their location); negative voxel values are counted, not fatal.
    """
    policy: NegativePolicy = "keep"
    with ShowerFile(path, geometry, negative=policy) as f:
        e_min, e_max = np.inf, -np.inf
        ratio_sum = zeros = negatives = 0.0
        layer_sum = np.zeros(geometry.n_layers) if geometry is not None else None
        chunks = f.iter_chunks(chunk_size)
        if progress:
            chunks = tqdm(chunks, total=-(-f.n_showers // chunk_size), desc="inspect", unit="chunk")
        for batch in chunks:
            e = batch.incident_energies[:, 0]
            e_min, e_max = min(e_min, float(e.min())), max(e_max, float(e.max()))
            ratio_sum += float((batch.showers.sum(axis=1) / e).sum())
            zeros += float((batch.showers == 0).sum())
            negatives += float((batch.showers < 0).sum())
            if geometry is not None and layer_sum is not None:
                layer_sum += np.add.reduceat(batch.showers, geometry.layer_offsets[:-1], axis=1).sum(axis=0)
        n = max(f.n_showers, 1)
        empty = f.n_showers == 0
        return FileSummary(
            path=str(path),
            n_showers=f.n_showers,
            n_voxels=f.n_voxels,
            dtype=str(f.dtype),
            matching_geometries=geometries_with_voxels(f.n_voxels),
            geometry=geometry.name if geometry is not None else None,
            incident_energy_min=None if empty else float(e_min),
            incident_energy_max=None if empty else float(e_max),
            energy_ratio_mean=None if empty else ratio_sum / n,
            sparsity=None if empty or f.n_voxels == 0 else zeros / (n * f.n_voxels),
            negative_values=int(negatives),
            extra_datasets=f.available_conditions,
            layer_mean_energy=(layer_sum / n).tolist() if layer_sum is not None and not empty else None,
        )
