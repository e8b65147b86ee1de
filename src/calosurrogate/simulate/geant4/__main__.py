"""``python -m calosurrogate.simulate.geant4``: compile the physics list now (the installer runs it).

``python -m calosurrogate.simulate.geant4 shard JSON``: simulate one shard of a sharded Geant4 job
(:mod:`calosurrogate.simulate.sharded`) in a process of its own: Geant4 keeps one application per
process, and its event loop holds the GIL, which would silence a Dask worker's heartbeats.
"""

import json
import sys

from calosurrogate.simulate.geant4.build import Geant4Unavailable, physics_library

if len(sys.argv) == 3 and sys.argv[1] == "shard":
    from calosurrogate.simulate.detectors import get_detector
    from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file

    job = json.loads(sys.argv[2])
    simulate_geant4_to_file(get_detector(job.pop("detector")), out=job.pop("out"), rows=tuple(job.pop("rows")),
                            progress=False, force=True, **job)  # fmt: skip
else:
    try:
        print(f"geant4 engine ready: {physics_library()._name}")
    except Geant4Unavailable as err:
        print(f"geant4 engine unavailable: {err}")
