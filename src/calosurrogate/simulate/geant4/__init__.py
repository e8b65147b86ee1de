"""Real Geant4 showers, offline: the ``geant4`` simulation engine.

Geant4 11.4 from the geant4-pybind wheel (no data files), a data-free electromagnetic physics
list compiled on first use (:mod:`.build`), the datasets' sampling calorimeters read out in their
voxel binnings (:mod:`.application`), and the engine that runs them in worker processes into a
CaloChallenge file, chunk by chunk and resumable (:mod:`.engine`).
"""

from calosurrogate.simulate.geant4.build import PINNED, Geant4Unavailable

__all__ = ["PINNED", "Geant4Unavailable"]
