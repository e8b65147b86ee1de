"""ParaFlow's set-up in Geant4: photons through an iron plate in a 4 T field onto PbWO4 crystals.

The world is vacuum (G4_Galactic) filled with a uniform field along x; the 24 x 24 crystals
(G4_PbWO4, 22 x 22 mm^2 front face, 230 mm long) start at z = 0, each crystal's copy number its
index in the flat (x, y) image, so Geant4's compiled scorer (a G4MultiFunctionalDetector with a
G4PSEnergyDeposit) sums each event's deposits per crystal. An iron plate (G4_Fe, 1 x 1 m^2) of
thickness d sits with its centre b in front of the crystals. Photons start 1.29 m in front of the
crystals, their position smeared by 44 mm in x and y, flying along z. The physics is the engine's
data-free EM list (``em_physics.cpp``).

Geant4 builds its geometry once per run: photons are simulated in groups that share (d, b), the
plate's solid and placement changed between groups (``GeometryHasBeenModified``). As in the
fast engine, the crystals' photostatistics (sigma / E = 2.8% / sqrt(E / GeV) per crystal) is
added to Geant4's deposits, and the stored image is the 8 x 16 window with the largest sum.
"""

from __future__ import annotations

import numpy as np

from calosurrogate.simulate.geant4.application import (
    _quiet,
    claim_run_manager,
    em_physics_list,
    particle_gun,
    start_run_manager,
)
from calosurrogate.simulate.geant4.build import bindings, physics_library
from calosurrogate.simulate.paraflow import ParaFlowSetup, ParaFlowSimulator


class Geant4CrystalCalorimeter:
    """The Geant4 application of ParaFlow's set-up (build it with :func:`crystal_calorimeter`).

    Args:
        setup: Crystals, plate material, field and beam (the plate's ranges are not used here:
            each call of :meth:`simulate` gives the configurations).
    """

    def __init__(self, setup: ParaFlowSetup) -> None:
        self.g4 = bindings()
        self.setup = setup
        self._library = physics_library()
        self._event = 0
        self._energies = np.zeros(0)
        self._positions = np.zeros((0, 2))
        grid = setup.full_grid
        self._images = np.zeros((0, grid.n_voxels))
        with _quiet(True):
            self._build()

    def _build(self) -> None:
        g4, app = self.g4, self

        class Gun(g4.G4VUserPrimaryGeneratorAction):
            def __init__(self) -> None:
                super().__init__()
                self.gun = particle_gun(g4)

            def GeneratePrimaries(self, event) -> None:
                i = app._event
                x, y = app._positions[i]
                self.gun.SetParticlePosition(
                    g4.G4ThreeVector(x * g4.mm, y * g4.mm, -app.setup.source_distance_mm * g4.mm)
                )
                self.gun.SetParticleEnergy(float(app._energies[i]) * g4.MeV)
                self.gun.GeneratePrimaryVertex(event)

        class Events(g4.G4UserEventAction):
            def EndOfEventAction(self, event) -> None:
                row = app._images[app._event]
                for index, energy in event.GetHCofThisEvent().GetHC(app._collection):
                    row[index] = energy / g4.MeV
                app._event += 1

        self.run_manager, self._user = start_run_manager(
            g4,
            self._construct_geometry,
            self._construct_scorer_and_field,
            em_physics_list(g4, self._library),
            lambda: [Gun(), Events()],
        )
        self._collection = g4.G4SDManager.GetSDMpointer().GetCollectionID("crystals/edep")

    def _construct_geometry(self):
        g4, mm, s = self.g4, self.g4.mm, self.setup
        grid = s.full_grid
        nist = g4.G4NistManager.Instance()
        vacuum = nist.FindOrBuildMaterial("G4_Galactic")
        half_width = 0.5 * grid.n_x * grid.crystal_width_mm, 0.5 * grid.n_y * grid.crystal_width_mm
        front = s.source_distance_mm + 10 * mm
        keep = self._keep = []  # Geant4 does not own Python-made volumes: they must outlive the run
        world_solid = g4.G4Box("world", 600 * mm, 600 * mm, (front + s.crystal_length_mm + 10) * mm)
        world_lv = g4.G4LogicalVolume(world_solid, vacuum, "world")
        world = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "world", None, False, 0)
        crystal_solid = g4.G4Box("crystal", grid.crystal_width_mm / 2 * mm, grid.crystal_width_mm / 2 * mm,
                                 s.crystal_length_mm / 2 * mm)  # fmt: skip
        self._crystal_lv = g4.G4LogicalVolume(crystal_solid, nist.FindOrBuildMaterial("G4_PbWO4"), "crystal")
        keep += [world_solid, world_lv, world, crystal_solid, self._crystal_lv]
        for ix in range(grid.n_x):
            for iy in range(grid.n_y):
                x = (ix + 0.5) * grid.crystal_width_mm - half_width[0]
                y = (iy + 0.5) * grid.crystal_width_mm - half_width[1]
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(x * mm, y * mm, s.crystal_length_mm / 2 * mm),
                                             self._crystal_lv, "crystal", world_lv, False, ix * grid.n_y + iy))  # fmt: skip
        # the plate: its thickness and position are set per group of photons (see simulate)
        self._plate_solid = g4.G4Box("plate", 500 * mm, 500 * mm, 1 * mm)
        plate_lv = g4.G4LogicalVolume(self._plate_solid, nist.FindOrBuildMaterial("G4_Fe"), "plate")
        self._plate = g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, -700 * mm), plate_lv, "plate", world_lv, False, 0)
        keep += [self._plate_solid, plate_lv, self._plate]
        return world

    def _construct_scorer_and_field(self) -> None:
        g4 = self.g4
        detector = g4.G4MultiFunctionalDetector("crystals")
        g4.G4SDManager.GetSDMpointer().AddNewDetector(detector)
        scorer = g4.G4PSEnergyDeposit("edep", 0)
        detector.RegisterPrimitive(scorer)
        self._crystal_lv.SetSensitiveDetector(detector)
        self._field = g4.G4UniformMagField(g4.G4ThreeVector(self.setup.field_tesla * g4.tesla, 0, 0))
        manager = g4.G4TransportationManager.GetTransportationManager().GetFieldManager()
        manager.SetDetectorField(self._field)
        manager.CreateChordFinder(self._field)
        self._keep += [detector, scorer]

    def _place_plate(self, thickness_x0: float, distance_cm: float) -> None:
        g4, mm = self.g4, self.g4.mm
        self._plate_solid.SetZHalfLength(0.5 * thickness_x0 * self.setup.plate.radiation_length_mm * mm)
        self._plate.SetTranslation(g4.G4ThreeVector(0, 0, -10.0 * distance_cm * mm))
        self.run_manager.GeometryHasBeenModified()

    def simulate(
        self, energies_mev: np.ndarray, thickness_x0: np.ndarray, distance_cm: np.ndarray, seed: int
    ) -> np.ndarray:
        """Full 24 x 24 images (MeV, with photostatistics), ``(n, 24, 24)``, of photons of the given
        energies through plates of the given thickness (X0) and distance (cm), each ``(n,)``.

        Photons sharing a plate configuration run in one Geant4 run; ``seed`` fixes Geant4's
        random engine and the source positions for this call alone.
        """
        g4 = self.g4
        energies = np.asarray(energies_mev, dtype=float).ravel()
        n = len(energies)
        plates = np.stack([np.broadcast_to(thickness_x0, n), np.broadcast_to(distance_cm, n)], 1).astype(float)
        rng = np.random.default_rng(seed)
        positions = rng.normal(0.0, self.setup.source_smear_mm, (n, 2))
        images = np.zeros((n, self.setup.full_grid.n_voxels))
        g4.HepRandom.setTheSeed(1 + int(seed) % (2**31 - 2))  # Geant4 refuses a zero seed
        configurations, group = np.unique(plates, axis=0, return_inverse=True)
        for k, (d, b) in enumerate(configurations):
            members = np.flatnonzero(group.ravel() == k)
            self._energies, self._positions, self._event = energies[members], positions[members], 0
            self._images = np.zeros((len(members), images.shape[1]))  # filled per event by Events
            self._place_plate(float(d), float(b))
            with _quiet(True):
                self.run_manager.BeamOn(len(members))
            if self._event != len(members):
                raise RuntimeError(f"Geant4 ran {self._event} of {len(members)} events")
            images[members] = self._images
        sigma = self.setup.stochastic_term * np.sqrt(images * 1e3)  # as the fast engine: 2.8% sqrt(E / GeV) GeV
        images = np.clip(images + sigma * rng.standard_normal(images.shape), 0.0, None)
        return images.reshape(n, self.setup.full_grid.n_x, self.setup.full_grid.n_y)

    def simulate_windows(self, conditions: dict[str, np.ndarray], seed: int) -> np.ndarray:
        """Stored showers ``(n, 128)`` MeV: the 8 x 16 window of largest sum, as the fast engine stores."""
        images = self.simulate(conditions["incident_energies"], conditions["plate_thickness"],
                               conditions["plate_distance"], seed)  # fmt: skip
        return ParaFlowSimulator(self.setup).crop(images).reshape(len(images), -1)


def crystal_calorimeter(setup: ParaFlowSetup | None = None) -> Geant4CrystalCalorimeter:
    """This process's Geant4 application of ParaFlow's set-up (built on the first call).

    Raises:
        ValueError: If this process already runs another Geant4 application (one run manager
            per process).
    """
    global _APPLICATION
    setup = setup or ParaFlowSetup()
    key = ("paraflow", setup.full_grid, setup.crystal_length_mm, setup.field_tesla, setup.source_distance_mm)
    claim_run_manager(key, "paraflow's crystals")
    if _APPLICATION is None:
        _APPLICATION = Geant4CrystalCalorimeter(setup)
    return _APPLICATION


_APPLICATION: Geant4CrystalCalorimeter | None = None
