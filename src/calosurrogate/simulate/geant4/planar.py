"""A planar highly granular calorimeter (ild-ecal) in Geant4: angled photons, deposits as point clouds.

The stack of :class:`~calosurrogate.geometry.planar.PlanarCalorimeter` as boxes in a vacuum world:
each layer an absorber plate (``G4_W``) then a silicon sensor (``G4_Si``, copy number = layer), the
layer's other material (PCB, carbon, air) left as vacuum; the front face at ``z = 0``. Photons
start 1 mm in front of it on their line through the entry point, along their direction. The
physics is the engine's data-free EM list (``em_physics.cpp``).

A sensitive detector written in Python records every step's deposit in silicon at the step's
mid-point (Geant4 11.4's bindings let Python subclass ``G4VSensitiveDetector``; the scoring costs
about as much CPU as the stepping). At the end of the event the deposits are summed in the
sensor's sub-cells (``cell_mm / sub_cells``), and each sub-cell with energy becomes one point at
its centre, in the shower's local frame: the points the fast engine makes from its spots.
"""

from __future__ import annotations

import numpy as np

from calosurrogate.data.points import PointClouds, sum_in_cells
from calosurrogate.geometry.planar import PLANAR_CALORIMETERS, PlanarCalorimeter
from calosurrogate.simulate.geant4.application import (
    _quiet,
    claim_run_manager,
    em_physics_list,
    particle_gun,
    start_run_manager,
)
from calosurrogate.simulate.geant4.build import bindings, physics_library

GUN_OFFSET_MM = 1.0


class Geant4PlanarCalorimeter:
    """The Geant4 application of a planar calorimeter (build it with :func:`planar_calorimeter`)."""

    def __init__(self, geometry: PlanarCalorimeter) -> None:
        self.g4 = bindings()
        self.geometry = geometry
        self._library = physics_library()
        self._event = 0
        self._conditions = (np.zeros(0), np.zeros((0, 3)), np.zeros((0, 2)))
        self._steps: list[tuple[float, float, int, float]] = []
        self._showers: list[np.ndarray] = []
        with _quiet(True):
            self._build()

    def _build(self) -> None:
        g4, app = self.g4, self

        class Gun(g4.G4VUserPrimaryGeneratorAction):
            def __init__(self) -> None:
                super().__init__()
                self.gun = particle_gun(g4)

            def GeneratePrimaries(self, event) -> None:
                energies, directions, entry = app._conditions
                i = app._event
                d = directions[i]
                # on the photon's line, 1 mm before the front face
                start = entry[i] - GUN_OFFSET_MM * d[:2] / d[2]
                self.gun.SetParticlePosition(g4.G4ThreeVector(start[0] * g4.mm, start[1] * g4.mm,
                                                              -GUN_OFFSET_MM * g4.mm))  # fmt: skip
                self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(*map(float, d)))
                self.gun.SetParticleEnergy(float(energies[i]) * g4.MeV)
                self.gun.GeneratePrimaryVertex(event)

        class Events(g4.G4UserEventAction):
            def EndOfEventAction(self, event) -> None:
                app._end_event()

        self.run_manager, self._user = start_run_manager(
            g4, self._construct_geometry, self._construct_scorer, em_physics_list(g4, self._library),
            lambda: [Gun(), Events()],
        )  # fmt: skip

    def _construct_geometry(self):
        g4, mm, geo = self.g4, self.g4.mm, self.geometry
        nist = g4.G4NistManager.Instance()
        vacuum = nist.FindOrBuildMaterial("G4_Galactic")
        half = geo.half_width_mm * mm
        depth = float(geo.layer_z[-1] + geo.silicon_mm / 2 + geo.gap_mm)
        keep = self._keep = []  # Geant4 does not own Python-made volumes: they must outlive the run
        world_solid = g4.G4Box("world", half + 10 * mm, half + 10 * mm, (depth + 20) * mm)
        world_lv = g4.G4LogicalVolume(world_solid, vacuum, "world")
        world = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "world", None, False, 0)
        silicon_solid = g4.G4Box("silicon", half, half, geo.silicon_mm / 2 * mm)
        self._silicon_lv = g4.G4LogicalVolume(silicon_solid, nist.FindOrBuildMaterial("G4_Si"), "silicon")
        keep += [world_solid, world_lv, world, silicon_solid, self._silicon_lv]
        absorber = nist.FindOrBuildMaterial("G4_W")
        plates: dict[float, object] = {}
        for layer, (thickness, z) in enumerate(zip(geo.absorbers_mm, geo.layer_z, strict=True)):
            if thickness not in plates:
                solid = g4.G4Box(f"absorber_{thickness}", half, half, thickness / 2 * mm)
                plates[thickness] = g4.G4LogicalVolume(solid, absorber, f"absorber_{thickness}")
                keep += [solid, plates[thickness]]
            absorber_z = z - geo.silicon_mm / 2 - thickness / 2
            keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, absorber_z * mm), plates[thickness], "absorber",
                                         world_lv, False, layer))  # fmt: skip
            keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z * mm), self._silicon_lv, "silicon", world_lv,
                                         False, layer))  # fmt: skip
        return world

    def _construct_scorer(self) -> None:
        g4, app = self.g4, self

        class Scorer(g4.G4VSensitiveDetector):
            def ProcessHits(self, step, history) -> bool:
                energy = step.GetTotalEnergyDeposit()
                if energy <= 0:
                    return False
                pre, post = step.GetPreStepPoint(), step.GetPostStepPoint()
                a, b = pre.GetPosition(), post.GetPosition()
                app._steps.append((0.5 * (a.x + b.x), 0.5 * (a.y + b.y), pre.GetTouchable().GetCopyNumber(), energy))
                return True

        scorer = Scorer("silicon_points")
        g4.G4SDManager.GetSDMpointer().AddNewDetector(scorer)
        self._silicon_lv.SetSensitiveDetector(scorer)
        self._keep.append(scorer)

    def _end_event(self) -> None:
        geo, i = self.geometry, self._event
        steps = np.array(self._steps, dtype=np.float64).reshape(-1, 4)
        self._steps = []
        _, directions, entry = self._conditions
        shifts = geo.shifts(directions[i : i + 1], entry[i : i + 1])
        cells = sum_in_cells(np.zeros(len(steps), np.int64), steps[:, 2].astype(np.int64), steps[:, :2],
                             steps[:, 3] / self.g4.MeV, shifts, geo.sub_cell_mm)  # fmt: skip
        self._showers.append(np.column_stack([cells.local_xy, cells.layer, cells.energy]).astype(np.float32))
        self._event += 1

    def simulate(self, incident_energies: np.ndarray, directions: np.ndarray, entry_points: np.ndarray,
                 seed: int) -> PointClouds:  # fmt: skip
        """Showers of photons of the given energies (MeV), unit directions ``(n, 3)`` and entry points
        ``(n, 2)`` mm, as points; ``seed`` fixes Geant4's random engine for this call alone."""
        energies = np.asarray(incident_energies, dtype=np.float64).ravel()
        self._conditions = (energies, np.asarray(directions, np.float64), np.asarray(entry_points, np.float64))
        self._event, self._showers, self._steps = 0, [], []
        self.g4.HepRandom.setTheSeed(1 + int(seed) % (2**31 - 2))  # Geant4 refuses a zero seed
        with _quiet(True):
            self.run_manager.BeamOn(len(energies))
        if self._event != len(energies):
            raise RuntimeError(f"Geant4 ran {self._event} of {len(energies)} events")
        return PointClouds.from_showers(energies, self._conditions[1], self._conditions[2], self._showers)


def planar_calorimeter(name: str = "ild-ecal") -> Geant4PlanarCalorimeter:
    """This process's Geant4 application of the planar calorimeter ``name`` (built on the first call).

    Raises:
        ValueError: If this process already runs another Geant4 application (one run manager per process).
    """
    global _APPLICATION
    claim_run_manager(("planar", name), f"the planar calorimeter {name}")
    if _APPLICATION is None:
        _APPLICATION = Geant4PlanarCalorimeter(PLANAR_CALORIMETERS[name]())
    return _APPLICATION


_APPLICATION: Geant4PlanarCalorimeter | None = None
