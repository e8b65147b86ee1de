"""A Geant4 application of a CaloChallenge sampling calorimeter, read out in its voxel binning.

The calorimeter is a stack of concentric discs along z (the particle's direction), each read-out
layer made of sub-layers of absorber then active material. Every active sub-layer is cut into
the layer's (alpha, r) cells out to the last radial edge; a cell's copy number is its voxel's
index in the dataset's flat order, so Geant4's own compiled scorer (a G4MultiFunctionalDetector
with a G4PSEnergyDeposit) sums each event's deposits straight into voxels, and the sub-layers of
one read-out layer into the same voxels. Stored voxel values are the active energy divided by
the dataset's sampling fraction (0.033 for datasets 2 and 3), as in the official files.

Geant4 allows one run manager per process: :func:`calorimeter` builds it once and hands out the
same application afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from calosurrogate.simulate.detectors import DetectorDescription
from calosurrogate.simulate.geant4.build import bindings, physics_library


@dataclass(frozen=True)
class SamplingLayout:
    """What one read-out layer is made of, in Geant4's NIST material names.

    Attributes:
        absorber, active: Materials (e.g. ``"G4_W"``, ``"G4_Si"``).
        absorber_mm, active_mm: Thickness of each in one sub-layer, mm.
        sublayers: Sub-layers (absorber then active) per read-out layer.
        outer_radius_factor: Radius of the discs over the last radial bin edge (material beyond
            the read-out still shapes the shower).
    """

    absorber: str
    absorber_mm: float
    active: str
    active_mm: float
    sublayers: int
    outer_radius_factor: float = 2.0


# CaloChallenge datasets 2 and 3: each layer two sub-layers of 1.4 mm W and 0.3 mm Si.
W_SI = SamplingLayout("G4_W", 1.4, "G4_Si", 0.3, sublayers=2)
LAYOUTS = {"ds2": W_SI, "ds3": W_SI}
PRODUCTION_CUT_MM = 0.7
PARTICLES = {"electron": "e-", "photon": "gamma", "positron": "e+"}


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Geant4's banner and table dumps go to the process's standard output, below Python: send
    them to /dev/null while Geant4 starts, so a progress bar stays readable."""
    if not enabled:
        yield
        return
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


class Geant4Calorimeter:
    """The Geant4 application of one detector (build it with :func:`calorimeter`).

    Args:
        detector: The detector description (geometry and sampling fraction).
        layout: Its materials and sub-layers.
        bookkeeping: Also score the absorber, the active material outside the read-out and the
            leakage (in 20 cm of tungsten around the calorimeter), for energy-conservation checks.
        scoring: Score the voxels (off only to time Geant4's bare stepping: showers come back empty).
    """

    def __init__(
        self, detector: DetectorDescription, layout: SamplingLayout, bookkeeping: bool = False, scoring: bool = True
    ) -> None:
        g4 = bindings()
        self.g4 = g4
        self.detector = detector
        self.layout = layout
        self.bookkeeping = bookkeeping
        self.scoring = scoring or bookkeeping
        self._library = physics_library()
        self._energies = np.zeros(0)
        self._voxels = np.zeros((0, detector.geometry.n_voxels))
        self._totals = np.zeros((0, 4))
        self._event = 0
        with _quiet(True):
            self._build()

    # ------------------------------------------------------------------ Geant4 user classes
    def _build(self) -> None:
        g4, app = self.g4, self
        mm = g4.mm

        class Physics(g4.G4VUserPhysicsList):
            def ConstructParticle(self) -> None:
                g4.G4Gamma.GammaDefinition()
                g4.G4Electron.ElectronDefinition()
                g4.G4Positron.PositronDefinition()
                g4.G4Geantino.GeantinoDefinition()
                g4.G4ChargedGeantino.ChargedGeantinoDefinition()

            def ConstructProcess(self) -> None:
                status = app._library.calo_g4em_construct()
                if status != 0:
                    raise RuntimeError(f"the compiled EM physics list failed to register its processes (code {status})")

            def SetCuts(self) -> None:
                self.SetDefaultCutValue(PRODUCTION_CUT_MM * mm)
                self.SetCutsWithDefault()

        class Detector(g4.G4VUserDetectorConstruction):
            def Construct(self):
                return app._construct_geometry()

            def ConstructSDandField(self) -> None:
                app._construct_scorers()

        class Gun(g4.G4VUserPrimaryGeneratorAction):
            def __init__(self) -> None:
                super().__init__()
                self.gun = g4.G4ParticleGun(1)
                particle = g4.G4ParticleTable.GetParticleTable().FindParticle(PARTICLES[app.detector.particle])
                self.gun.SetParticleDefinition(particle)
                self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(0, 0, 1))
                self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, -1 * mm))

            def GeneratePrimaries(self, event) -> None:
                self.gun.SetParticleEnergy(float(app._energies[event.GetEventID()]) * g4.MeV)
                self.gun.GeneratePrimaryVertex(event)

        class Events(g4.G4UserEventAction):
            def EndOfEventAction(self, event) -> None:
                app._read_event(event)

        self.run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        self.run_manager.SetVerboseLevel(0)
        # Geant4 holds raw pointers: keep every user object alive. The physics list must be set
        # before the gun exists (a particle gun needs the particle table).
        self._user = [Detector(), Physics()]
        self.run_manager.SetUserInitialization(self._user[0])
        self.run_manager.SetUserInitialization(self._user[1])
        self._user += [Gun(), Events()]
        self.run_manager.SetUserAction(self._user[2])
        self.run_manager.SetUserAction(self._user[3])
        ui = g4.G4UImanager.GetUIpointer()
        for command in ("/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0", "/process/em/verbose 0",
                        "/process/eLoss/verbose 0", "/process/msc/verbose 0"):  # fmt: skip
            ui.ApplyCommand(command)
        self.run_manager.Initialize()
        sdm = g4.G4SDManager.GetSDMpointer()
        self._collections = {name: sdm.GetCollectionID(f"{name}/edep") for name in self._scored}

    def _construct_geometry(self):
        g4, mm, layout, geometry = self.g4, self.g4.mm, self.layout, self.detector.geometry
        nist = g4.G4NistManager.Instance()
        absorber, active = nist.FindOrBuildMaterial(layout.absorber), nist.FindOrBuildMaterial(layout.active)
        vacuum = nist.FindOrBuildMaterial("G4_Galactic")
        r_max = max(layer.r_edges[-1] for layer in geometry.layers)
        radius = layout.outer_radius_factor * r_max * mm
        pitch = (layout.absorber_mm + layout.active_mm) * mm
        depth = geometry.n_layers * layout.sublayers * pitch
        keep = self._keep = []  # Geant4 does not own Python-made volumes: they must outlive the run
        hall_solid = g4.G4Box("hall", radius * 1.5, radius * 1.5, depth + 10 * mm)
        hall_lv = g4.G4LogicalVolume(hall_solid, vacuum, "hall")
        if self.bookkeeping:
            # the vacuum hall inside 20 cm of tungsten that stops what leaves the calorimeter: its
            # deposits are the leakage
            margin = 200 * mm
            world_solid = g4.G4Box("world", radius * 1.5 + margin, radius * 1.5 + margin, depth + 10 * mm + margin)
            world_lv = g4.G4LogicalVolume(world_solid, absorber, "world")
            keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(), hall_lv, "hall", world_lv, False, 0))
            self._catcher_lv = world_lv
        else:
            world_solid, world_lv = hall_solid, hall_lv
        world = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "world", None, False, 0)
        keep += [hall_solid, hall_lv]
        absorber_lv = g4.G4LogicalVolume(g4.G4Tubs("absorber", 0, radius, layout.absorber_mm * mm / 2, 0, 2 * np.pi),
                                         absorber, "absorber")  # fmt: skip
        keep += [world_solid, world_lv, world, absorber_lv]
        cells: dict[tuple[float, ...], object] = {}
        self._active_layers = []
        for i, layer in enumerate(geometry.layers):
            # one active-layer volume per read-out layer: its cells' copy numbers are that layer's voxels
            solid = g4.G4Tubs(f"active_{i}", 0, radius, layout.active_mm * mm / 2, 0, 2 * np.pi)
            layer_lv = g4.G4LogicalVolume(solid, active, f"active_{i}")
            keep += [solid, layer_lv]
            self._active_layers.append(layer_lv)
            alpha_edges = np.linspace(-np.pi, np.pi, layer.n_alpha + 1)
            for a in range(layer.n_alpha):
                for r in range(layer.n_r):
                    shape = (layer.r_edges[r], layer.r_edges[r + 1], alpha_edges[a], alpha_edges[a + 1])
                    if shape not in cells:
                        cell_solid = g4.G4Tubs(f"cell_{len(cells)}", shape[0] * mm, shape[1] * mm, layout.active_mm * mm / 2,
                                               shape[2], shape[3] - shape[2])  # fmt: skip
                        cells[shape] = g4.G4LogicalVolume(cell_solid, active, f"cell_{len(cells)}")
                        keep.append(cell_solid)
                    voxel = int(geometry.voxel_index(i, a, r))
                    keep.append(
                        g4.G4PVPlacement(None, g4.G4ThreeVector(), cells[shape], "cell", layer_lv, False, voxel)
                    )
            for s in range(layout.sublayers):
                z0 = -depth / 2 + (i * layout.sublayers + s) * pitch
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z0 + layout.absorber_mm * mm / 2), absorber_lv,
                                             "absorber", hall_lv, False, i * layout.sublayers + s))  # fmt: skip
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z0 + layout.absorber_mm * mm + layout.active_mm * mm / 2),
                                             layer_lv, "active", hall_lv, False, i))  # fmt: skip
        self._cell_volumes = list(cells.values())
        self._absorber_lv = absorber_lv
        # the stack's front face at z = 0 of the gun's frame: shift the gun instead of the stack
        self._front_z = -depth / 2
        return world

    def _construct_scorers(self) -> None:
        g4 = self.g4
        sdm = g4.G4SDManager.GetSDMpointer()
        volumes = {"voxels": self._cell_volumes} if self.scoring else {}
        if self.bookkeeping:
            volumes |= {"absorber": [self._absorber_lv], "active_outside": self._active_layers,
                        "leakage": [self._catcher_lv]}  # fmt: skip
        self._scored = list(volumes)
        self._detectors = []
        for name, lvs in volumes.items():
            detector = g4.G4MultiFunctionalDetector(name)
            sdm.AddNewDetector(detector)
            scorer = g4.G4PSEnergyDeposit("edep", 0)
            detector.RegisterPrimitive(scorer)
            for lv in lvs:
                lv.SetSensitiveDetector(detector)
            self._detectors.append((detector, scorer))

    def _read_event(self, event) -> None:
        if not self.scoring:
            self._event += 1
            return
        hits = event.GetHCofThisEvent()
        row = self._voxels[self._event]
        for index, energy in hits.GetHC(self._collections["voxels"]):
            row[index] = energy
        if self.bookkeeping:
            self._totals[self._event] = [
                sum(e for _, e in hits.GetHC(self._collections["absorber"])),
                row.sum(),
                sum(e for _, e in hits.GetHC(self._collections["active_outside"])),
                sum(e for _, e in hits.GetHC(self._collections["leakage"])),
            ]
        self._event += 1

    # ------------------------------------------------------------------ running
    def simulate(self, energies_mev: np.ndarray, seed: int) -> np.ndarray:
        """Showers of the given incident energies, ``(n, n_voxels)`` in stored units (MeV).

        Args:
            energies_mev: ``(n,)`` incident energies in MeV.
            seed: Seeds Geant4's random engine for this call alone: the same energies and seed
                give the same showers, whatever ran in this process before.
        """
        g4 = self.g4
        self._energies = np.asarray(energies_mev, dtype=np.float64).ravel()
        n = len(self._energies)
        self._voxels = np.zeros((n, self.detector.geometry.n_voxels))
        self._totals = np.zeros((n, 4))
        self._event = 0
        self._user[2].gun.SetParticlePosition(g4.G4ThreeVector(0, 0, self._front_z - 1 * g4.mm))
        g4.HepRandom.setTheSeed(int(seed) % (2**31 - 1))
        with _quiet(True):
            self.run_manager.BeamOn(n)
        if self._event != n:
            raise RuntimeError(f"Geant4 ran {self._event} of {n} events")
        showers = self._voxels / self.detector.stack.sampling_fraction / g4.MeV
        threshold = self.detector.readout_threshold_mev
        showers[showers < threshold] = 0.0
        return showers

    @property
    def last_totals(self) -> np.ndarray:
        """Per event of the last :meth:`simulate` (with ``bookkeeping``): energy in the absorber,
        in the read-out cells, in the active material outside them, and leaked (stopped in the
        tungsten around the calorimeter), MeV, shape ``(n, 4)``."""
        if not self.bookkeeping:
            raise RuntimeError("built without bookkeeping")
        return self._totals / self.g4.MeV


_APPLICATION: Geant4Calorimeter | None = None


def layout_of(detector: DetectorDescription) -> SamplingLayout:
    """The Geant4 sampling layout of ``detector``.

    Raises:
        ValueError: If the engine has none for it.
    """
    if detector.name not in LAYOUTS:
        raise ValueError(
            f"the geant4 engine knows the sampling layout of {sorted(LAYOUTS)}, not {detector.name}: use --engine fast"
        )
    return LAYOUTS[detector.name]


def calorimeter(detector: DetectorDescription, bookkeeping: bool = False, scoring: bool = True) -> Geant4Calorimeter:
    """This process's Geant4 application of ``detector`` (built on the first call).

    Raises:
        ValueError: If ``detector`` has no Geant4 layout, or this process already runs another
            detector or bookkeeping setting (Geant4 allows one run manager per process).
    """
    global _APPLICATION
    layout = layout_of(detector)
    if _APPLICATION is None:
        _APPLICATION = Geant4Calorimeter(detector, layout, bookkeeping, scoring)
    elif (_APPLICATION.detector.name, _APPLICATION.bookkeeping, _APPLICATION.scoring) != (
        detector.name,
        bookkeeping,
        scoring or bookkeeping,
    ):
        raise ValueError(
            f"this process already runs Geant4 for {_APPLICATION.detector.name} (bookkeeping "
            f"{_APPLICATION.bookkeeping}, scoring {_APPLICATION.scoring}); Geant4 allows one run manager per process"
        )
    return _APPLICATION
