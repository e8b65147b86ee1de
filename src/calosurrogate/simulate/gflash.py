"""The GFlash parametrization of electromagnetic showers.

Formulas from G. Grindhammer and S. Peters, "The parameterized simulation of electromagnetic
showers in homogeneous and sampling calorimeters", hep-ex/0001020 (homogeneous-media
parametrization, sections 2.1-2.3). Depth ``t`` is in radiation lengths, radii in Moliere
radii, energies in GeV unless stated. All functions work elementwise on arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc


@dataclass(frozen=True)
class GFlashCoefficients:
    """The coefficients of the parametrization a detector may refit to its own full simulation.

    The defaults are the published homogeneous-medium values (hep-ex/0001020, eqs. 7-16); the
    sampling calorimeters of datasets 2 and 3 ship values fitted to Geant4
    (``benchmarks/calibrate_fast_engine.py``).

    Attributes:
        depth_slope, depth_offset: Mean ``ln T = ln(depth_slope * ln y - depth_offset)``.
        alpha_offset, alpha_slope: Mean ``ln alpha = ln(alpha_offset + (alpha_slope + 2.26 / Z) ln y)``.
        core_radius_scale, tail_radius_scale: Factors on ``R_C`` and ``R_T``.
        core_weight_scale: Factor on the core weight ``p`` (clipped to [0, 1]).
        entry_deposit_mev, entry_power: Stored energy (MeV) the start of an electron's shower
            leaves in the first layer beyond GFlash's profile (which starts at zero), on the shower
            axis: ``entry_deposit_mev * (E / 1 GeV) ** entry_power``.
    """

    depth_slope: float = 1.0
    depth_offset: float = 0.812
    alpha_offset: float = 0.81
    alpha_slope: float = 0.458
    core_radius_scale: float = 1.0
    tail_radius_scale: float = 1.0
    core_weight_scale: float = 1.0
    entry_deposit_mev: float = 0.0
    entry_power: float = 0.0


PUBLISHED = GFlashCoefficients()


def log_y(energy_gev: np.ndarray, critical_energy_mev: float) -> np.ndarray:
    """``ln y`` with ``y = E / E_c``: the variable every GFlash parameter depends on."""
    return np.log(np.asarray(energy_gev) * 1e3 / critical_energy_mev)


def longitudinal_parameters(
    energy_gev: np.ndarray,
    z_eff: float,
    critical_energy_mev: float,
    rng: np.random.Generator,
    coefficients: GFlashCoefficients = PUBLISHED,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw each shower's depth of maximum ``T`` (X0) and shape ``alpha`` of its gamma profile.

    ``ln T`` and ``ln alpha`` are normal with the published means, widths and correlation
    (hep-ex/0001020, eqs. 7-10), so that showers fluctuate as a whole: a late shower is
    also a narrower one, which gives neighbouring layers positive and distant layers
    negative correlations.

    Returns:
        ``(T, alpha)``, each shaped like ``energy_gev``; ``alpha > 1`` always.
    """
    ly = np.maximum(log_y(energy_gev, critical_energy_mev), 1.2)
    mean_ln_t, mean_ln_a = _mean_logs(ly, z_eff, coefficients)
    sigma_ln_t = 1.0 / np.maximum(-1.4 + 1.26 * ly, 1.0)
    sigma_ln_a = 1.0 / np.maximum(-0.58 + 0.86 * ly, 1.0)
    rho = np.clip(0.705 + 0.023 * ly, -0.99, 0.99)
    z1 = rng.standard_normal(np.shape(ly))
    z2 = rng.standard_normal(np.shape(ly))
    ln_t = mean_ln_t + sigma_ln_t * z1
    ln_a = mean_ln_a + sigma_ln_a * (rho * z1 + np.sqrt(1 - rho**2) * z2)
    return np.exp(ln_t), np.maximum(np.exp(ln_a), 1.05)


def median_longitudinal_parameters(
    energy_gev: np.ndarray, z_eff: float, critical_energy_mev: float, coefficients: GFlashCoefficients = PUBLISHED
) -> tuple[np.ndarray, np.ndarray]:
    """The median shower's ``(T, alpha)``: :func:`longitudinal_parameters` without its fluctuations."""
    ly = np.maximum(log_y(energy_gev, critical_energy_mev), 1.2)
    mean_ln_t, mean_ln_a = _mean_logs(ly, z_eff, coefficients)
    return np.exp(mean_ln_t), np.maximum(np.exp(mean_ln_a), 1.05)


def _mean_logs(ly: np.ndarray, z_eff: float, c: GFlashCoefficients) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``ln T`` and ``ln alpha`` (hep-ex/0001020, eqs. 7-8, with the detector's coefficients)."""
    mean_ln_t = np.log(np.maximum(c.depth_slope * ly - c.depth_offset, 0.1))
    mean_ln_a = np.log(np.maximum(c.alpha_offset + (c.alpha_slope + 2.26 / z_eff) * ly, 1.05))
    return mean_ln_t, mean_ln_a


def longitudinal_fractions(
    t_max: np.ndarray, alpha: np.ndarray, starts_x0: np.ndarray, ends_x0: np.ndarray
) -> np.ndarray:
    """Fraction of the energy deposited between ``starts_x0`` and ``ends_x0`` (gamma profile).

    Args:
        t_max: Depth of maximum per shower, shape ``(B,)``.
        alpha: Shape per shower, shape ``(B,)``.
        starts_x0: Layer fronts in X0 along the shower axis, shape ``(B, L)`` or ``(L,)``.
        ends_x0: Layer backs, same shape.

    Returns:
        Fractions, shape ``(B, L)``.
    """
    beta = ((alpha - 1.0) / t_max)[:, None]
    a = alpha[:, None]
    lo = gammainc(a, beta * np.clip(starts_x0, 0, None))
    hi = gammainc(a, beta * np.clip(ends_x0, 0, None))
    return hi - lo


def radial_parameters(
    tau: np.ndarray, energy_gev: np.ndarray, z_eff: float, coefficients: GFlashCoefficients = PUBLISHED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Core radius ``R_C``, tail radius ``R_T`` (Moliere radii) and core weight ``p`` at depth ``tau = t / T``.

    hep-ex/0001020, eqs. 12-16 (homogeneous media). ``energy_gev`` must broadcast with ``tau``.
    """
    ln_e = np.log(energy_gev)
    r_core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z_eff) * tau
    k1 = 0.659 - 0.00309 * z_eff
    k4 = 0.3585 + 0.0421 * ln_e
    r_tail = k1 * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p1 = 2.632 - 0.00094 * z_eff
    p2 = 0.401 + 0.00187 * z_eff
    p3 = 1.313 - 0.0686 * ln_e
    x = (p2 - tau) / p3
    p = np.clip(coefficients.core_weight_scale * p1 * np.exp(x - np.exp(x)), 0.0, 1.0)
    return r_core * coefficients.core_radius_scale, r_tail * coefficients.tail_radius_scale, p


def radial_cdf(r: np.ndarray, r_core: np.ndarray, r_tail: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Fraction of a layer's energy within radius ``r`` (Moliere radii) of the shower axis.

    The two-component profile ``f(r) = p 2r R_C^2 / (r^2 + R_C^2)^2 + (1 - p) 2r R_T^2 / (r^2 + R_T^2)^2``
    integrates to ``p r^2 / (r^2 + R_C^2) + (1 - p) r^2 / (r^2 + R_T^2)``.
    """
    r2 = r**2
    return p * r2 / (r2 + r_core**2) + (1 - p) * r2 / (r2 + r_tail**2)
