"""The Geant4 bindings, made usable offline, and the compiled electromagnetic physics list.

geant4-pybind (pinned to :data:`PINNED`) carries Geant4 without its data files. Two things make it
run here without them:

- ``GEANT4_DATA_DIR`` points at an empty folder before the import, so the bindings do not try to
  download the data;
- ``G4ENSDFSTATEDATA`` points at a folder holding an empty ``ENSDFSTATE.dat``: the nuclide table,
  built whenever a run manager is, otherwise stops with the fatal exception PART70000. No nuclear
  level is needed by electron and photon showers, and with an empty table none is used.

The compiled part (beside this file: ``em_physics.cpp``, the physics list; ``fast_simulation.cpp``,
the fast-simulation model that hands showers to a surrogate; ``declarations.hpp``, what both
declare of Geant4) is compiled once per wheel with the machine's C++ compiler into the user's cache
folder, linked against the bindings' own shared library.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PINNED = "0.1.3"
HERE = Path(__file__).parent
SOURCES = (HERE / "em_physics.cpp", HERE / "fast_simulation.cpp")
HEADERS = (HERE / "declarations.hpp",)


class Geant4Unavailable(OSError):
    """The geant4 engine cannot run here: the machine lacks the pinned bindings or a C++ compiler."""


def cache_folder() -> Path:
    """Where the compiled physics list and the stand-in data folders live."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "calosurrogate" / "geant4"


def _offline_environment() -> None:
    folder = cache_folder()
    empty = folder / "no-data"
    ensdf = folder / "ensdf-empty"
    empty.mkdir(parents=True, exist_ok=True)
    ensdf.mkdir(parents=True, exist_ok=True)
    (ensdf / "ENSDFSTATE.dat").touch()
    os.environ.setdefault("GEANT4_DATA_DIR", str(empty))
    os.environ.setdefault("G4ENSDFSTATEDATA", str(ensdf))


def bindings() -> ModuleType:
    """``geant4_pybind``, imported offline, after checking its version.

    Raises:
        Geant4Unavailable: If it is not installed or is not version :data:`PINNED`.
    """
    try:
        version = importlib.metadata.version("geant4-pybind")
    except importlib.metadata.PackageNotFoundError:
        raise Geant4Unavailable(
            f"the geant4 engine needs geant4-pybind=={PINNED}: pip install 'calosurrogate[geant4]'"
        ) from None
    if version != PINNED:
        raise Geant4Unavailable(
            f"the geant4 engine is built for geant4-pybind=={PINNED} (its compiled physics list calls that "
            f"Geant4's symbols); {version} is installed: pip install geant4-pybind=={PINNED}"
        )
    if "geant4_pybind" not in sys.modules:
        _offline_environment()
    import geant4_pybind

    return geant4_pybind


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    raise Geant4Unavailable(
        "the geant4 engine compiles a small physics list (em_physics.cpp) and found no C++ compiler: "
        "install g++ (apt-get install g++) or set CXX"
    )


def physics_library() -> ctypes.CDLL:
    """The compiled physics list and fast-simulation model, built on first use (seconds) and reused.

    The library is named by the hash of its sources, the compiler and the bindings' file, so a new
    wheel or a changed source builds anew; it is written under a temporary name and renamed.
    """
    module = bindings()
    target = Path(module.__file__)
    compiler = _compiler()
    key = hashlib.sha256(
        b"".join(path.read_bytes() for path in SOURCES + HEADERS)
        + compiler.encode()
        + str(target).encode()
        + str(target.stat().st_size).encode()
    ).hexdigest()[:16]
    library = cache_folder() / f"calosurrogate_geant4-{key}.so"
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{library.name}.", suffix=".partial", dir=library.parent)
        os.close(fd)
        command = [compiler, "-O2", "-shared", "-fPIC", "-std=c++17", "-o", tmp, *map(str, SOURCES), str(target),
                   f"-Wl,-rpath,{target.parent}"]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise Geant4Unavailable(
                    f"compiling {' and '.join(path.name for path in SOURCES)} failed ({' '.join(command)}): {done.stderr.strip()[-800:]}"
                )
            os.replace(tmp, library)
        finally:
            Path(tmp).unlink(missing_ok=True)
    # The bindings' module is already loaded under the same path, so the library binds to its symbols.
    return ctypes.CDLL(str(library))
