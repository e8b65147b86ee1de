"""High-level shower features exactly as the CaloChallenge reference evaluation defines them.

Definitions (CaloChallenge 2022, arXiv:2410.21611; ../shared/spec/evaluation.md sections 3-4):
voxels below ``min_energy`` are set to zero first; then per shower and relevant layer ``l``
E_layer, centres of energy ``EC = sum(x E) / (sum(E) + 1e-16)`` in eta, phi (layers binned in
alpha only) and r, widths ``sqrt(max(sum(x^2 E) / (sum(E) + 1e-16) - EC^2, 0))`` and the
sparsity, the fraction of the layer's voxels that are zero. Positions in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from calosurrogate.geometry import CylindricalGeometry

EPS = 1e-16


def apply_threshold(showers: np.ndarray, min_energy: float) -> np.ndarray:
    """A copy of ``showers`` with every voxel below ``min_energy`` (MeV) set to 0."""
    showers = np.array(showers, dtype=np.float64, copy=True)
    showers[showers < min_energy] = 0.0
    return showers


@dataclass
class HighLevelFeatures:
    """Per-shower features; arrays have N rows.

    Attributes:
        incident_energy: MeV, ``(N,)``.
        e_tot: Total energy, MeV, ``(N,)``.
        e_layer: Energy per relevant layer, MeV, ``(N, L)``.
        ec_eta, ec_phi, width_eta, width_phi: mm, ``(N, L_alpha)`` for the layers binned in alpha.
        ec_r, width_r: mm, ``(N, L)``.
        sparsity: Fraction of zero voxels per layer, ``(N, L)``.
    """

    incident_energy: np.ndarray
    e_tot: np.ndarray
    e_layer: np.ndarray
    ec_eta: np.ndarray
    ec_phi: np.ndarray
    width_eta: np.ndarray
    width_phi: np.ndarray
    ec_r: np.ndarray
    width_r: np.ndarray
    sparsity: np.ndarray

    def __len__(self) -> int:
        return len(self.e_tot)

    def __getitem__(self, index: slice | np.ndarray) -> HighLevelFeatures:
        return HighLevelFeatures(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(parts: list[HighLevelFeatures]) -> HighLevelFeatures:
        """Join feature blocks along the shower axis."""
        return HighLevelFeatures(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(parts[0])}
        )

    def classifier_inputs(self) -> np.ndarray:
        """The high-level classifier (and FPD/KPD) inputs in the reference order, ``(N, D)``.

        ``[log10 E_inc, log10(E_layer + 1e-8), EC_eta/100, EC_phi/100, width_eta/100,
        width_phi/100, log10(E_tot + 1e-8), sparsity, EC_r/100, width_r/100]``: 30 columns for
        dataset-1 photons, 362 for datasets 2 and 3.
        """
        return np.concatenate(
            [
                np.log10(self.incident_energy)[:, None],
                np.log10(self.e_layer + 1e-8),
                self.ec_eta / 1e2,
                self.ec_phi / 1e2,
                self.width_eta / 1e2,
                self.width_phi / 1e2,
                np.log10(self.e_tot + 1e-8)[:, None],
                self.sparsity,
                self.ec_r / 1e2,
                self.width_r / 1e2,
            ],
            axis=1,
        )


def _centre_and_width(
    energy_sum: np.ndarray, moment1: np.ndarray, moment2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    centre = moment1 / (energy_sum + EPS)
    width = np.sqrt(np.maximum(moment2 / (energy_sum + EPS) - centre**2, 0.0))
    return centre, width


def _moment_matrix(geometry: CylindricalGeometry) -> np.ndarray:
    """``(n_voxels, 7 L)`` matrix whose product with showers gives per-layer sums of E, xE, x^2 E (x = r, eta, phi)."""
    n_layers = geometry.n_layers
    matrix = np.zeros((geometry.n_voxels, 7 * n_layers))
    rows = np.arange(geometry.n_voxels)
    for k, weight in enumerate(
        (
            np.ones(geometry.n_voxels),
            geometry.r_mid,
            geometry.r_mid**2,
            geometry.eta,
            geometry.eta**2,
            geometry.phi,
            geometry.phi**2,
        )
    ):
        matrix[rows, k * n_layers + geometry.voxel_layer] = weight
    return matrix


_MOMENTS: dict[int, tuple[CylindricalGeometry, np.ndarray]] = {}


def moment_matrix(geometry: CylindricalGeometry) -> np.ndarray:
    """The ``(n_voxels, 7 L)`` matrix whose product with showers ``(N, n_voxels)`` gives, per layer,
    the sums of E, r E, r^2 E, eta E, eta^2 E, phi E, phi^2 E (blocks of L columns, in that order)."""
    cached = _MOMENTS.get(id(geometry))
    if cached is None or cached[0] is not geometry:
        cached = (geometry, _moment_matrix(geometry))
        _MOMENTS[id(geometry)] = cached
    return cached[1]


def compute_features(
    showers: np.ndarray, incident_energies: np.ndarray, geometry: CylindricalGeometry, min_energy: float | None
) -> HighLevelFeatures:
    """High-level features of a block of showers (threshold applied here; None: already applied).

    Args:
        showers: Voxel energies, MeV, ``(N, n_voxels)``.
        incident_energies: MeV, ``(N, 1)`` or ``(N,)``.
        geometry: The binning.
        min_energy: Evaluation threshold, MeV.
    """
    x = apply_threshold(showers, min_energy) if min_energy is not None else np.asarray(showers, dtype=np.float64)
    # One matrix product gives every per-layer moment (far faster than masked sums per layer).
    moments = (x @ moment_matrix(geometry)).reshape(len(x), 7, geometry.n_layers)
    e_layer = moments[:, 0]
    ec_r, width_r = _centre_and_width(e_layer, moments[:, 1], moments[:, 2])
    ec_eta, width_eta = _centre_and_width(e_layer, moments[:, 3], moments[:, 4])
    ec_phi, width_phi = _centre_and_width(e_layer, moments[:, 5], moments[:, 6])
    alpha_layers = [i for i in range(geometry.n_layers) if geometry.layer_has_alpha_bins(i)]
    voxels_per_layer = np.diff(geometry.layer_offsets)
    zeros = np.add.reduceat((x == 0).astype(np.float64), geometry.layer_offsets[:-1], axis=1)
    return HighLevelFeatures(
        incident_energy=np.asarray(incident_energies, dtype=np.float64).reshape(-1),
        e_tot=x.sum(axis=1),
        e_layer=e_layer,
        ec_eta=ec_eta[:, alpha_layers],
        ec_phi=ec_phi[:, alpha_layers],
        width_eta=width_eta[:, alpha_layers],
        width_phi=width_phi[:, alpha_layers],
        ec_r=ec_r,
        width_r=width_r,
        sparsity=zeros / voxels_per_layer,
    )
