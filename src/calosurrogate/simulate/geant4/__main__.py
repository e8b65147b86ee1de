"""``python -m calosurrogate.simulate.geant4``: compile the physics list now (the installer runs it)."""

from calosurrogate.simulate.geant4.build import Geant4Unavailable, physics_library

try:
    print(f"geant4 engine ready: {physics_library()._name}")
except Geant4Unavailable as err:
    print(f"geant4 engine unavailable: {err}")
