"""A trained surrogate inside Geant4, as its fast-simulation model: the same events simulated in
full and with the surrogate, each written as a CaloChallenge file, with the time per event.

The Geant4 application (``simulate.geant4.application``, built with ``fast_simulation``) puts the
calorimeter in an envelope region whose fast-simulation model kills every electron, positron and
photon entering it above a threshold and hands its energy to the surrogate, once per event, as
Geant4's Par04 example runs its generative model. The full run switches the model off; both runs
shoot the same incident energies with the same Geant4 seed, in one process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from calosurrogate._io import check_output_path
from calosurrogate.data import ShowerWriter
from calosurrogate.data.spectra import EnergySpectrum
from calosurrogate.models.base import ConfigError, Surrogate
from calosurrogate.sampling.generate import check_conditions
from calosurrogate.simulate import get_detector
from calosurrogate.simulate.geant4.application import ShowerModel, calorimeter


@dataclass(frozen=True)
class FastSimulationRun:
    """What :func:`simulate_full_and_fast` did.

    Attributes:
        full, fast: The two CaloChallenge files (same incident energies, event by event).
        n: Events in each.
        seconds_full, seconds_fast: Wall time of each Geant4 run (the fast one includes the
            surrogate's inference).
        seconds_surrogate: Of ``seconds_fast``, the time inside the surrogate.
        taken: Particles the fast-simulation model took (one per event above the threshold).
        events_per_call: Events per call of the surrogate.
    """

    full: Path
    fast: Path
    n: int
    seconds_full: float
    seconds_fast: float
    seconds_surrogate: float
    taken: int
    events_per_call: int = 1

    @property
    def speedup(self) -> float:
        """Full simulation's time per event over the fast simulation's."""
        return self.seconds_full / self.seconds_fast

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "full": str(self.full), "fast": str(self.fast), "n": self.n, "taken": self.taken,
            "ms_per_event_full": 1e3 * self.seconds_full / self.n, "ms_per_event_fast": 1e3 * self.seconds_fast / self.n,
            "ms_per_event_surrogate": 1e3 * self.seconds_surrogate / self.n, "speedup": self.speedup,
            "events_per_call": self.events_per_call,
        }  # fmt: skip


class _TimedSurrogate:
    """The surrogate as the application's shower model, timing its own calls."""

    def __init__(self, model: Surrogate, device: str, precision: str) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.seconds = 0.0

    def __call__(self, energies_mev: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        conditions = energies_mev.reshape(-1, 1)
        showers = self.model.sample(conditions, batch_size=len(conditions), device=self.device,
                                    precision=self.precision)  # fmt: skip
        self.seconds += time.perf_counter() - start
        return showers


def _write(path: Path, geometry, energies: np.ndarray, showers: np.ndarray, attrs: dict) -> None:
    with ShowerWriter(path, geometry.n_voxels, attrs=attrs) as writer:
        writer.write(energies.reshape(-1, 1), showers.astype(np.float32))


def simulate_full_and_fast(
    model: Surrogate,
    n: int,
    out_dir: str | os.PathLike[str],
    spectrum: EnergySpectrum | str | None = None,
    seed: int = 0,
    threshold_mev: float | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    events_per_call: int = 1,
    force: bool = False,
) -> FastSimulationRun:
    """Simulate ``n`` events in full Geant4 and with ``model`` as Geant4's fast-simulation model.

    Args:
        model: A trained surrogate of a detector the geant4 engine knows (ds2, ds3, ds1-photons), conditioned
            on the incident energy alone.
        n: Events.
        out_dir: Folder of ``full.h5`` and ``fast.h5``.
        spectrum: Incident energies (default: log-uniform over the model's training range, or the
            dataset's spectrum).
        seed: Seeds the energies, Geant4 and the surrogate.
        threshold_mev: The model takes particles above this kinetic energy, MeV (default: the
            lowest incident energy it was trained on); below it Geant4 tracks them in full.
        events_per_call: The surrogate runs once per this many events (1: once per event, as
            Geant4's Par04 example runs its model).
        force: Replace existing outputs.

    Raises:
        ConfigError: A model with other conditions than the incident energy.
        ValueError: A detector without a Geant4 layout.
        Geant4Unavailable: Without the pinned bindings or a C++ compiler.
    """
    if tuple(model.condition_names) != ("incident_energies",):
        raise ConfigError(
            f"the fast-simulation model passes the incident energy alone; this model is conditioned on "
            f"{list(model.condition_names)}"
        )
    detector = get_detector(model.geometry.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full_path, fast_path = check_output_path(out_dir / "full.h5", force), check_output_path(out_dir / "fast.h5", force)
    if model.condition_range is None:
        low, high = 0.0, None
    else:
        low, high = (float(v) for v in np.asarray(model.condition_range)[:, 0])
    if spectrum is None:
        spectrum = f"log-uniform:{low:.6g}MeV:{high:.6g}MeV" if high is not None else detector.default_spectrum
    spectrum = EnergySpectrum.parse(spectrum) if isinstance(spectrum, str) else spectrum
    energies = spectrum.sample(n, np.random.default_rng(seed)).reshape(-1)
    check_conditions(energies.reshape(-1, 1), model)  # warns once if outside the training range
    threshold = low if threshold_mev is None else float(threshold_mev)
    app = calorimeter(detector, fast_simulation=True)
    g4_seed = int(np.random.default_rng([seed, 1]).integers(1, 2**31 - 1))

    start = time.perf_counter()
    full = app.simulate(energies, g4_seed)
    seconds_full = time.perf_counter() - start

    shower_model: ShowerModel = _TimedSurrogate(model, device, precision)
    # one untimed call first: a long run amortises the first call's set-up, a short one would not
    model.sample(energies[:1].reshape(-1, 1), batch_size=1, device=device, precision=precision)
    torch.manual_seed(seed)
    start = time.perf_counter()
    fast = app.simulate(energies, g4_seed, shower_model=shower_model, threshold_mev=threshold,
                        events_per_call=events_per_call)  # fmt: skip
    seconds_fast = time.perf_counter() - start
    taken = int(app.last_taken.sum())

    common = {"detector": detector.name, "energy_spectrum": spectrum.spec, "seed": seed}
    _write(full_path, detector.geometry, energies, full, common | {"generator": "Geant4 (full simulation)"})
    _write(fast_path, detector.geometry, energies, fast, common | {
        "generator": f"Geant4 with the calosurrogate {model.family} surrogate as its fast-simulation model",
        "fast_simulation_threshold_mev": threshold})  # fmt: skip
    return FastSimulationRun(full_path, fast_path, n, seconds_full, seconds_fast, shower_model.seconds, taken,
                             events_per_call)  # fmt: skip
