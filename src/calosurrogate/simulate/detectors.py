"""Detector descriptions the shower simulator knows: binning, material stack, response.

The simulator is a parametrized simulation standing in for Geant4; these descriptions say
which detector it imitates and with which numbers. Sources:

- ds2 / ds3 (CaloChallenge datasets 2 and 3): concentric W/Si cylinders, each sub-layer
  1.4 mm W + 0.3 mm Si, two sub-layers per read-out layer (about 0.8 X0), 45 read-out layers;
  stored values are visible energy / 0.033, i.e. the deposited energy; readout threshold
  0.5 keV visible = 15.15 keV stored (CaloChallenge dataset documentation). The GFlash
  coefficients and the response are fitted to Geant4 showers of this stack (the geant4 engine),
  and what GFlash's forms leave over is corrected by profile tables fitted to the same
  (``simulate/tables/w_si.json``, ``simulate/profile_tables.py``).
- ds1-photons: an ATLAS-barrel-like Pb/LAr accordion at |eta| ~ 0.2. Depths in X0 are the
  approximate figures of the ATLAS detector paper (JINST 3 (2008) S08003, section 5.2):
  about 1.5 X0 of material before the presampler, presampler, strips 4.3 X0, middle 16 X0,
  back 2 X0, about 1 X0 of cryostat, then the first tile layer (1.5 interaction lengths of
  Fe/scintillator, taken as 14 X0). Effective material: 1.53 mm Pb + 4.2 mm LAr.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from calosurrogate.geometry import CylindricalGeometry, LayerStack, ds1_photons, ds2, ds3
from calosurrogate.geometry.material import LEAD, LIQUID_ARGON, SILICON, TUNGSTEN, sampling_mixture
from calosurrogate.simulate.gflash import PUBLISHED, GFlashCoefficients
from calosurrogate.simulate.profile_tables import ProfileTables, shipped_tables


@dataclass(frozen=True)
class DetectorDescription:
    """Everything the simulator needs to know about a calorimeter.

    Attributes:
        name: Name (matches the geometry it reads out).
        geometry: The voxel binning.
        stack: Material and depth of each relevant layer (same order as the geometry's layers).
        particle: ``"electron"`` or ``"photon"``; photons first convert after an exponential
            depth of mean 9/7 X0.
        default_spectrum: Incident-energy spectrum spec used when none is given.
        readout_threshold_mev: Stored voxel values below this are read out as 0 (MeV).
        spot_energy_mev: Mean energy of one GFlash energy spot, in stored units (MeV). With
            ``spot_shape`` it sets the sampling resolution, ``sigma/E = sqrt(spot (1 + 1/k) / E)``,
            and the sparsity.
        spot_shape: Shape ``k`` of the gamma distribution of one spot's energy (small ``k``:
            Landau-like skew, many deposits below threshold).
        lateral_spread: Standard deviation of the per-shower log-normal scale of the radial
            profile (shower-to-shower width fluctuation).
        nominal_response: Expected mean E_tot / E_inc for contained showers.
        coefficients: The GFlash coefficients (published, or fitted to Geant4).
        profile_tables: Residual factors on the mean layer energies and radial profile by
            incident energy, fitted to Geant4 where GFlash's forms cannot follow it (or None).
        hold_containment: Hold each shower's share of its energy inside the binning at the median
            shower's of its energy, so that profile fluctuations move energy without losing it
            (engines calibrated to Geant4, whose constant term on the W/Si stack is 0.1%).
    """

    name: str
    geometry: CylindricalGeometry
    stack: LayerStack
    particle: str
    default_spectrum: str
    readout_threshold_mev: float
    spot_energy_mev: float
    spot_shape: float
    lateral_spread: float = 0.08
    nominal_response: float = 1.0
    coefficients: GFlashCoefficients = PUBLISHED
    profile_tables: ProfileTables | None = None
    hold_containment: bool = False

    def __post_init__(self) -> None:
        if self.stack.n_layers != self.geometry.n_layers:
            raise ValueError(
                f"detector {self.name}: {self.stack.n_layers} layers in the stack, {self.geometry.n_layers} in the geometry"
            )
        if self.profile_tables is not None and self.profile_tables.n_layers != self.geometry.n_layers:
            raise ValueError(f"detector {self.name}: profile tables for {self.profile_tables.n_layers} layers")
        if self.particle not in ("electron", "photon"):
            raise ValueError(f"detector {self.name}: the simulator parametrizes electromagnetic showers only")


W_SI = sampling_mixture("W/Si (1.4 mm W + 0.3 mm Si)", [(TUNGSTEN, 1.4), (SILICON, 0.3)])
PB_LAR = sampling_mixture("Pb/LAr accordion (1.53 mm Pb + 4.2 mm LAr)", [(LEAD, 1.53), (LIQUID_ARGON, 4.2)])


# Fitted to Geant4 showers of this stack at 1, 10 and 100 GeV (the geant4 engine):
# benchmarks/calibrate_fast_engine.py, result benchmarks/results/calibration_ds2.json.
W_SI_FITTED = GFlashCoefficients(
    depth_slope=0.94504, depth_offset=0.64312, alpha_offset=1.17278, alpha_slope=0.37012,
    core_radius_scale=1.32781, tail_radius_scale=1.06365, core_weight_scale=1.03807, entry_deposit_mev=8.81679, entry_power=0.36953,
)  # fmt: skip
# The spot energy (it sets the sampling resolution) and the response refitted with the containment
# held (hold_containment), to Geant4 at 1 GeV - 1 TeV: calibrate_fast_engine.py --stage spot,
# result benchmarks/results/calibration_ds2_spot.json.
W_SI_FITTED_RESPONSE = 0.96094
W_SI_FITTED_SPOT_MEV = 4.823
W_SI_UNCALIBRATED_SPOT_MEV = 6.0


def _w_si(geometry: CylindricalGeometry) -> DetectorDescription:
    readout_layer_x0 = 2 * 1.7 / W_SI.radiation_length_mm
    return DetectorDescription(
        name=geometry.name,
        geometry=geometry,
        stack=LayerStack.uniform(W_SI, geometry.n_layers, readout_layer_x0, sampling_fraction=0.033),
        particle="electron",
        default_spectrum="log-uniform:1GeV:1TeV",
        readout_threshold_mev=0.5e-3 / 0.033,
        spot_energy_mev=W_SI_FITTED_SPOT_MEV,
        spot_shape=0.5,
        nominal_response=W_SI_FITTED_RESPONSE,
        coefficients=W_SI_FITTED,
        profile_tables=shipped_tables("w_si"),
        hold_containment=True,
    )


def uncalibrated(detector: DetectorDescription) -> DetectorDescription:
    """``detector`` as the engine made it before its calibration to Geant4 (the published GFlash
    coefficients), for before/after comparisons."""
    if detector.coefficients == PUBLISHED and detector.profile_tables is None and not detector.hold_containment:
        return detector
    return dataclasses.replace(
        detector,
        coefficients=PUBLISHED,
        nominal_response=1.0,
        spot_energy_mev=W_SI_UNCALIBRATED_SPOT_MEV,
        profile_tables=None,
        hold_containment=False,
    )


CHEAP_SPOT_FACTOR = 2.0


def cheap(detector: DetectorDescription, spot_factor: float = CHEAP_SPOT_FACTOR) -> DetectorDescription:
    """``detector`` in the engine's cheap mode: the same showers deposited as ``spot_factor``
    times fewer, larger energy spots.

    It stands in for a full simulation run with an aggressive production cut, which leaves fewer,
    more energetic deposits and a coarser sampling; a cheap and a nominal run with one seed
    share their incident energies and profile fluctuations shower by shower (paired samples).
    The fast engine spends its time on the profiles, not the spots, so this mode is not faster:
    the speed-up of a cheap simulation is measured on Geant4 (``--range-cut``).
    """
    if spot_factor <= 0:
        raise ValueError(f"spot_factor must be positive, got {spot_factor}")
    return dataclasses.replace(detector, spot_energy_mev=detector.spot_energy_mev * spot_factor)


def ds2_detector() -> DetectorDescription:
    """CaloChallenge dataset 2 detector (W/Si, 6480 voxels)."""
    return _w_si(ds2())


def ds3_detector() -> DetectorDescription:
    """CaloChallenge dataset 3 detector (W/Si, 40500 voxels)."""
    return _w_si(ds3())


def ds1_photons_detector() -> DetectorDescription:
    """An ATLAS-barrel-like Pb/LAr calorimeter read out in the dataset-1 photon binning."""
    bounds = ((1.5, 2.1), (2.1, 6.4), (6.4, 22.4), (22.4, 24.4), (25.4, 39.4))
    return DetectorDescription(
        name="ds1-photons",
        geometry=ds1_photons(),
        stack=LayerStack(PB_LAR, bounds, sampling_fraction=1.0),
        particle="photon",
        default_spectrum="ds1",
        readout_threshold_mev=0.1,
        spot_energy_mev=4.0,
        spot_shape=1.0,
    )


BUILTIN_DETECTORS: dict[str, Callable[[], DetectorDescription]] = {
    "ds1-photons": ds1_photons_detector,
    "ds2": ds2_detector,
    "ds3": ds3_detector,
}


def get_detector(name: str) -> DetectorDescription:
    """A built-in detector by geometry name.

    Raises:
        ValueError: For an unknown name, or ds1-pions (hadronic showers are not parametrized).
    """
    if name == "ds1-pions":
        raise ValueError(
            "the built-in simulator parametrizes electromagnetic showers only; ds1-pions needs hadronic "
            "showers, so read real ds1-pions files instead of simulating them"
        )
    if name not in BUILTIN_DETECTORS:
        raise ValueError(f"no built-in detector {name!r}; the simulator knows {sorted(BUILTIN_DETECTORS)}")
    return BUILTIN_DETECTORS[name]()
