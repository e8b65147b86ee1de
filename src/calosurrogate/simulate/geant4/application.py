"""A Geant4 application of a CaloChallenge sampling calorimeter, read out in its voxel binning.

The calorimeter is a stack of concentric discs along z (the particle's direction), each read-out
layer made of sub-layers of absorber then active material. Every active sub-layer is cut into
the layer's (alpha, r) cells out to the last radial edge; a cell's copy number is its voxel's
index in the dataset's flat order, so Geant4's own compiled scorer (a G4MultiFunctionalDetector
with a G4PSEnergyDeposit) sums each event's deposits straight into voxels, and the sub-layers of
one read-out layer into the same voxels. Stored voxel values are the active energy divided by
the dataset's sampling fraction (0.033 for datasets 2 and 3), as in the official files.

With ``fast_simulation``, the stack sits in a vacuum envelope that is a Geant4 region with a
fast-simulation model (``fast_simulation.cpp``): electrons, positrons and photons entering it above
a threshold are killed there and handed to a shower model (any callable from incident energies to
voxels, e.g. a trained surrogate), whose voxels are added to the event's, the way Geant4's Par04
example runs its generative model. The model can be switched off to simulate the same events in full.

Geant4 allows one run manager per process: :func:`calorimeter` builds it once and hands out the
same application afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from calosurrogate.simulate.detectors import DetectorDescription
from calosurrogate.simulate.geant4.build import bindings, physics_library


@dataclass(frozen=True)
class SamplingLayout:
    """What each read-out layer is made of, in Geant4's NIST material names.

    Attributes:
        absorber, active: Materials (e.g. ``"G4_W"``, ``"G4_Si"``).
        absorber_mm, active_mm: Thickness of each in one sub-layer, mm.
        sublayers: Sub-layers (absorber then active) per read-out layer: one number for all, or
            one per layer.
        outer_radius_factor: Radius of the discs over the last radial bin edge (material beyond
            the read-out still shapes the shower).
        passive_mm: Absorber in front of each read-out layer that nothing reads (dead material), mm;
            empty: none.
        sampling_fraction: The active material's share of the deposited energy, which stored
            values are divided by; None: the dataset's own (datasets 2 and 3 store Si / 0.033).
    """

    absorber: str
    absorber_mm: float
    active: str
    active_mm: float
    sublayers: int | tuple[int, ...]
    outer_radius_factor: float = 2.0
    passive_mm: tuple[float, ...] = ()
    sampling_fraction: float | None = None

    def sublayers_of(self, layer: int) -> int:
        return self.sublayers if isinstance(self.sublayers, int) else self.sublayers[layer]

    def passive_of(self, layer: int) -> float:
        return self.passive_mm[layer] if self.passive_mm else 0.0


# CaloChallenge datasets 2 and 3: each layer two sub-layers of 1.4 mm W and 0.3 mm Si.
W_SI = SamplingLayout("G4_W", 1.4, "G4_Si", 0.3, sublayers=2)
# The ATLAS-barrel-like stack of the fast engine's ds1-photons (simulate/detectors.py), as planar
# sampling layers of 1.53 mm Pb + 4.2 mm LAr (0.30 X0 each; the accordion folds are not
# described): 1.5 X0 of lead before the presampler, presampler 0.6 X0, strips 4.3 X0, middle 16 X0,
# back 2 X0, 1 X0 of lead for the cryostat, then the tile layer taken as 14 X0 of the same stack.
# Stored values are the deposited energy, as ds1 stores: the LAr energy over this stack's sampling
# fraction for photon showers, 0.242-0.244 at 2-8 GeV (measured with bookkeeping=True; a test keeps it).
PB_LAR = SamplingLayout(
    "G4_Pb", 1.53, "G4_lAr", 4.2, sublayers=(2, 14, 53, 7, 46), outer_radius_factor=1.5,
    passive_mm=(8.4, 0.0, 0.0, 0.0, 5.6), sampling_fraction=0.243,
)  # fmt: skip
LAYOUTS = {"ds2": W_SI, "ds3": W_SI, "ds1-photons": PB_LAR}
PRODUCTION_CUT_MM = 0.7
PARTICLES = {"electron": "e-", "photon": "gamma", "positron": "e+"}
ENVELOPE_REGION = "calosurrogate_envelope"
ShowerModel = Callable[[np.ndarray], np.ndarray]
"""Incident energies ``(k,)`` in MeV -> showers ``(k, n_voxels)`` in stored units (MeV)."""


def em_physics_list(
    g4, library: ctypes.CDLL, extra: Callable[[], None] | None = None, range_cut_mm: float = PRODUCTION_CUT_MM
):
    """The data-free EM physics list (``em_physics.cpp``) for e+-, photons and geantinos, with a
    production cut of ``range_cut_mm`` (a range; Geant4 turns it into an energy per material, below
    which no secondary is made and the energy is deposited on the spot); ``extra`` registers more
    processes after it."""

    class Physics(g4.G4VUserPhysicsList):
        def ConstructParticle(self) -> None:
            g4.G4Gamma.GammaDefinition()
            g4.G4Electron.ElectronDefinition()
            g4.G4Positron.PositronDefinition()
            g4.G4Geantino.GeantinoDefinition()
            g4.G4ChargedGeantino.ChargedGeantinoDefinition()

        def ConstructProcess(self) -> None:
            status = library.calo_g4em_construct()
            if status != 0:
                raise RuntimeError(f"the compiled EM physics list failed to register its processes (code {status})")
            if extra is not None:
                extra()

        def SetCuts(self) -> None:
            self.SetDefaultCutValue(range_cut_mm * g4.mm)
            self.SetCutsWithDefault()

    return Physics()


def start_run_manager(g4, construct: Callable, construct_sd_and_field: Callable, physics, make_actions: Callable):
    """A serial run manager with its detector (``construct`` returns the world volume,
    ``construct_sd_and_field`` adds scorers and fields), physics list and user actions, quiet and
    initialised; returns it and the user objects, which the caller must keep alive (Geant4 holds
    raw pointers to them). ``make_actions`` is called after the physics list is set: a particle
    gun needs the particle table."""

    class Detector(g4.G4VUserDetectorConstruction):
        def Construct(self):
            return construct()

        def ConstructSDandField(self) -> None:
            construct_sd_and_field()

    run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
    run_manager.SetVerboseLevel(0)
    user = [Detector(), physics]
    run_manager.SetUserInitialization(user[0])
    run_manager.SetUserInitialization(user[1])
    for action in make_actions():
        run_manager.SetUserAction(action)
        user.append(action)
    ui = g4.G4UImanager.GetUIpointer()
    for command in ("/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0", "/process/em/verbose 0",
                    "/process/eLoss/verbose 0", "/process/msc/verbose 0"):  # fmt: skip
        ui.ApplyCommand(command)
    run_manager.Initialize()
    return run_manager, user


def particle_gun(g4, particle: str = "gamma"):
    """A Geant4 particle gun of one ``particle`` per event (its Geant4 name), flying along +z."""
    gun = g4.G4ParticleGun(1)
    gun.SetParticleDefinition(g4.G4ParticleTable.GetParticleTable().FindParticle(particle))
    gun.SetParticleMomentumDirection(g4.G4ThreeVector(0, 0, 1))
    return gun


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
        fast_simulation: Put the stack in an envelope region with the fast-simulation model, used
            when :meth:`simulate` is given a shower model.
        range_cut_mm: Production cut (nominal :data:`PRODUCTION_CUT_MM`; a cheap simulation takes
            a larger one).
    """

    def __init__(
        self,
        detector: DetectorDescription,
        layout: SamplingLayout,
        bookkeeping: bool = False,
        scoring: bool = True,
        fast_simulation: bool = False,
        range_cut_mm: float = PRODUCTION_CUT_MM,
    ) -> None:
        if not range_cut_mm > 0:
            raise ValueError(f"the production cut must be a positive range in mm, got {range_cut_mm}")
        g4 = bindings()
        self.range_cut_mm = float(range_cut_mm)
        self.g4 = g4
        self.detector = detector
        self.layout = layout
        self.bookkeeping = bookkeeping
        self.scoring = scoring or bookkeeping
        self._library = physics_library()
        self._energies = np.zeros(0)
        self._voxels = np.zeros((0, detector.geometry.n_voxels))
        self._totals = np.zeros((0, 5))
        self._event = 0
        self.fast_simulation = fast_simulation
        self._shower_model: ShowerModel | None = None
        self._taken: list[tuple[int, float]] = []  # (event, kinetic energy in MeV) handed to the model
        self._fast_voxels = np.zeros((0, detector.geometry.n_voxels))
        self._callback_error: BaseException | None = None
        with _quiet(True):
            self._build()

    # ------------------------------------------------------------------ Geant4 user classes
    def _build(self) -> None:
        g4, app = self.g4, self
        mm = g4.mm

        def fast_simulation_process() -> None:
            # the process that hands particles in an envelope region to its fast-simulation models
            fast = g4.G4FastSimulationPhysics()
            for name in PARTICLES.values():
                fast.ActivateFastSimulation(name)
            fast.ConstructProcess()
            app._fast_physics = fast

        Physics = em_physics_list(
            g4, self._library, fast_simulation_process if self.fast_simulation else None, self.range_cut_mm
        )

        class Gun(g4.G4VUserPrimaryGeneratorAction):
            def __init__(self) -> None:
                super().__init__()
                self.gun = particle_gun(g4, PARTICLES[app.detector.particle])
                self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, -1 * mm))

            def GeneratePrimaries(self, event) -> None:
                self.gun.SetParticleEnergy(float(app._energies[event.GetEventID()]) * g4.MeV)
                self.gun.GeneratePrimaryVertex(event)

        class Events(g4.G4UserEventAction):
            def EndOfEventAction(self, event) -> None:
                app._read_event(event)

        self.run_manager, self._user = start_run_manager(
            g4, self._construct_geometry, self._construct_scorers, Physics, lambda: [Gun(), Events()]
        )
        sdm = g4.G4SDManager.GetSDMpointer()
        self._collections = {name: sdm.GetCollectionID(f"{name}/edep") for name in self._scored}
        if self.fast_simulation:
            self._attach_fast_simulation()

    def _attach_fast_simulation(self) -> None:
        lib = self._library
        callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_double))
        lib.calo_g4fast_attach.argtypes = [ctypes.c_char_p, callback]
        lib.calo_g4fast_set_active.argtypes = [ctypes.c_int, ctypes.c_double]
        lib.calo_g4fast_calls.argtypes = [ctypes.POINTER(ctypes.c_ulong)]
        lib.calo_g4fast_layout_errors.restype = ctypes.c_ulong
        self._mass_mev = self._user[2].gun.GetParticleDefinition().GetPDGMass() / self.g4.MeV
        # ctypes calls it from inside BeamOn and the library keeps the raw pointer: keep the object
        self._take_callback = callback(self._fast_take)
        status = lib.calo_g4fast_attach(ENVELOPE_REGION.encode(), self._take_callback)
        if status != 0:
            raise RuntimeError(f"the fast-simulation model could not be attached to its region (code {status})")
        lib.calo_g4fast_set_active(0, 0.0)

    def _kinetic_energy_mev(self, state) -> float:
        momentum = np.sqrt(state[3] ** 2 + state[4] ** 2 + state[5] ** 2) / self.g4.MeV
        return float(np.sqrt(momentum**2 + self._mass_mev**2) - self._mass_mev)

    def _fast_take(self, state) -> int:
        """Geant4 hands the particle to the model (it is killed after this returns)."""
        try:
            mm = self.g4.mm
            energy, shot = self._kinetic_energy_mev(state), self._energies[self._event]
            # vacuum lies between the gun and the envelope: only the primary enters, untouched
            if abs(energy / shot - 1) > 1e-6:
                raise RuntimeError(
                    f"the fast-simulation model read {energy:.6g} MeV where the gun shot {shot:.6g} MeV: the "
                    "compiled model's view of G4FastTrack does not match this Geant4"
                )
            if abs(state[6] ** 2 + state[7] ** 2 + state[8] ** 2 - 1) > 1e-6:
                raise RuntimeError("the fast-simulation model read a direction that is not a unit vector")
            # the model's voxels are laid out around the calorimeter's axis, as the datasets' are
            if abs(state[0]) > 1 * mm or abs(state[1]) > 1 * mm or state[8] < 0.999:
                raise ValueError(
                    f"a particle entered the calorimeter at x = {state[0] / mm:.1f} mm, y = {state[1] / mm:.1f} mm "
                    f"with direction z {state[8]:.3f}: the shower model deposits showers along the axis only"
                )
            self._taken.append((self._event, energy))
        except BaseException as error:
            self._callback_error = error
        return 0

    @property
    def fast_simulation_calls(self) -> dict[str, int]:
        """How often Geant4 called each virtual function of the fast-simulation model."""
        counts = (ctypes.c_ulong * 6)()
        self._library.calo_g4fast_calls(counts)
        names = ("IsApplicable", "ModelTrigger", "DoIt", "AtRestModelTrigger", "AtRestDoIt", "Flush")
        return dict(zip(names, map(int, counts), strict=True)) | {
            "layout_errors": int(self._library.calo_g4fast_layout_errors())
        }

    def _construct_geometry(self):
        g4, mm, layout, geometry = self.g4, self.g4.mm, self.layout, self.detector.geometry
        nist = g4.G4NistManager.Instance()
        absorber, active = nist.FindOrBuildMaterial(layout.absorber), nist.FindOrBuildMaterial(layout.active)
        vacuum = nist.FindOrBuildMaterial("G4_Galactic")
        r_max = max(layer.r_edges[-1] for layer in geometry.layers)
        radius = layout.outer_radius_factor * r_max * mm
        pitch = (layout.absorber_mm + layout.active_mm) * mm
        # (products of integers, not running sums: the same positions to the last bit as every earlier run)
        passive_mm = sum(layout.passive_of(i) for i in range(geometry.n_layers))
        depth = passive_mm * mm + sum(layout.sublayers_of(i) for i in range(geometry.n_layers)) * pitch
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
        mother = hall_lv
        if self.fast_simulation:
            # a vacuum envelope just around the stack (the gun stays outside it): the model's region
            envelope_solid = g4.G4Tubs("envelope", 0, radius, depth / 2 + 0.5 * mm, 0, 2 * np.pi)
            mother = g4.G4LogicalVolume(envelope_solid, vacuum, "envelope")
            region = g4.G4Region(ENVELOPE_REGION)
            region.AddRootLogicalVolume(mother)
            keep += [envelope_solid, mother, region,
                     g4.G4PVPlacement(None, g4.G4ThreeVector(), mother, "envelope", hall_lv, False, 0)]  # fmt: skip
        cells: dict[tuple[float, ...], object] = {}
        self._active_layers, self._passive_lvs = [], []
        passive_z = 0.0  # passive material placed so far
        copy = 0  # absorber sub-layers placed so far
        for i, layer in enumerate(geometry.layers):
            if layout.passive_of(i) > 0:
                thickness = layout.passive_of(i) * mm
                solid = g4.G4Tubs(f"passive_{i}", 0, radius, thickness / 2, 0, 2 * np.pi)
                passive_lv = g4.G4LogicalVolume(solid, absorber, f"passive_{i}")
                z = -depth / 2 + passive_z + copy * pitch
                keep += [solid, passive_lv, g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + thickness / 2), passive_lv,
                                                             "passive", mother, False, i)]  # fmt: skip
                self._passive_lvs.append(passive_lv)
                passive_z += thickness
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
            for _ in range(layout.sublayers_of(i)):
                z = -depth / 2 + passive_z + copy * pitch
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + layout.absorber_mm * mm / 2), absorber_lv,
                                             "absorber", mother, False, copy))  # fmt: skip
                keep.append(g4.G4PVPlacement(None, g4.G4ThreeVector(0, 0, z + layout.absorber_mm * mm + layout.active_mm * mm / 2),
                                             layer_lv, "active", mother, False, i))  # fmt: skip
                copy += 1
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
                        "passive": self._passive_lvs,
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
        if self.scoring:
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
                    sum(e for _, e in hits.GetHC(self._collections["passive"])),
                ]
        self._event += 1
        if self._shower_model is not None and (
            self._event % self._events_per_call == 0 or self._event == len(self._energies)
        ):
            self._deposit_taken()

    def _deposit_taken(self) -> None:
        """Run the shower model on the particles taken since its last call, add their voxels to
        their events'."""
        pending = self._taken[self._first_pending :]
        self._first_pending = len(self._taken)
        if not pending or self._callback_error is not None:
            return
        try:
            events, energies = (np.array(column) for column in zip(*pending, strict=True))
            showers = np.asarray(self._shower_model(energies), dtype=np.float64).reshape(len(energies), -1)
            np.add.at(self._fast_voxels, events, showers)
        except BaseException as error:  # kept for simulate(): an exception cannot cross Geant4's C++
            self._callback_error = error
            self.g4.G4RunManager.GetRunManager().AbortRun(True)

    # ------------------------------------------------------------------ running
    def simulate(
        self,
        energies_mev: np.ndarray,
        seed: int,
        shower_model: ShowerModel | None = None,
        threshold_mev: float = 0.0,
        events_per_call: int = 1,
    ) -> np.ndarray:
        """Showers of the given incident energies, ``(n, n_voxels)`` in stored units (MeV).

        Args:
            energies_mev: ``(n,)`` incident energies in MeV.
            seed: Seeds Geant4's random engine for this call alone: the same energies and seed
                give the same showers, whatever ran in this process before.
            shower_model: With ``fast_simulation``: electrons, positrons and photons entering the
                calorimeter with at least ``threshold_mev`` of kinetic energy are handed to it, and
                its voxels (stored units) are added to the event's. None: full simulation.
            threshold_mev: The fast-simulation model's trigger threshold, MeV.
            events_per_call: The shower model runs at the end of every this many events, on the
                particles taken in them (1: once per event, as Geant4's Par04 example runs its
                model; more: larger batches, the voxels still added to their own events).
        """
        g4 = self.g4
        if shower_model is not None and not self.fast_simulation:
            raise ValueError("a shower model needs the application built with fast_simulation=True")
        self._energies = np.asarray(energies_mev, dtype=np.float64).ravel()
        n = len(self._energies)
        n_voxels = self.detector.geometry.n_voxels
        self._voxels, self._fast_voxels = np.zeros((n, n_voxels)), np.zeros((n, n_voxels))
        self._totals = np.zeros((n, 5))
        self._event = 0
        self._taken, self._callback_error = [], None
        self._shower_model, self._events_per_call, self._first_pending = shower_model, max(1, events_per_call), 0
        if self.fast_simulation:
            # the model triggers on momentum (decided in C++ at every step): the threshold's momentum
            # for the shot particle's mass
            mass = self._mass_mev
            momentum = np.sqrt(threshold_mev**2 + 2 * threshold_mev * mass) * g4.MeV
            self._library.calo_g4fast_set_active(int(shower_model is not None), momentum)
        self._user[2].gun.SetParticlePosition(g4.G4ThreeVector(0, 0, self._front_z - 1 * g4.mm))
        g4.HepRandom.setTheSeed(int(seed) % (2**31 - 1))
        with _quiet(True):
            self.run_manager.BeamOn(n)
        if self._callback_error is not None:
            raise self._callback_error
        if self._event != n:
            raise RuntimeError(f"Geant4 ran {self._event} of {n} events")
        sampling_fraction = self.layout.sampling_fraction or self.detector.stack.sampling_fraction
        showers = self._voxels / sampling_fraction / g4.MeV
        threshold = self.detector.readout_threshold_mev
        showers[showers < threshold] = 0.0
        return showers + self._fast_voxels

    @property
    def last_taken(self) -> np.ndarray:
        """Per event of the last :meth:`simulate`: how many particles the fast-simulation model took."""
        return np.bincount([index for index, _ in self._taken], minlength=len(self._energies))

    @property
    def last_totals(self) -> np.ndarray:
        """Per event of the last :meth:`simulate` (with ``bookkeeping``): energy in the absorber,
        in the read-out cells, in the active material outside them, leaked (stopped in the absorber
        material around the calorimeter) and in the passive (dead) material, MeV, shape ``(n, 5)``."""
        if not self.bookkeeping:
            raise RuntimeError("built without bookkeeping")
        return self._totals / self.g4.MeV


_APPLICATION: Geant4Calorimeter | None = None
_RUN_MANAGER_OWNER: tuple[tuple, str] | None = None


def claim_run_manager(key: tuple, description: str) -> None:
    """Reserve this process's one Geant4 run manager for the application ``key``.

    Raises:
        ValueError: If another application (or the same with other settings) holds it.
    """
    global _RUN_MANAGER_OWNER
    if _RUN_MANAGER_OWNER is None:
        _RUN_MANAGER_OWNER = (key, description)
    elif _RUN_MANAGER_OWNER[0] != key:
        raise ValueError(f"this process already runs Geant4 for {_RUN_MANAGER_OWNER[1]}, not {description}; "
                         "Geant4 allows one run manager per process")  # fmt: skip


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


def calorimeter(
    detector: DetectorDescription,
    bookkeeping: bool = False,
    scoring: bool = True,
    fast_simulation: bool = False,
    range_cut_mm: float = PRODUCTION_CUT_MM,
) -> Geant4Calorimeter:
    """This process's Geant4 application of ``detector`` (built on the first call).

    Raises:
        ValueError: If ``detector`` has no Geant4 layout, or this process already runs another
            detector or setting (Geant4 allows one run manager per process).
    """
    global _APPLICATION
    layout = layout_of(detector)
    wanted = (detector.name, bookkeeping, scoring or bookkeeping, fast_simulation, float(range_cut_mm))
    claim_run_manager(("sampling calorimeter", *wanted), f"{detector.name} (bookkeeping {wanted[1]}, scoring "
                      f"{wanted[2]}, fast simulation {wanted[3]}, production cut {wanted[4]} mm)")  # fmt: skip
    if _APPLICATION is None:
        _APPLICATION = Geant4Calorimeter(detector, layout, bookkeeping, scoring, fast_simulation, range_cut_mm)
    return _APPLICATION
