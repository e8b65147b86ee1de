"""The geant4 engine: its cost over Geant4's bare stepping, its scaling with workers, and the
calorimeter's physics (sampling fraction, resolution, containment) by energy.

Each measurement runs in a fresh process (Geant4 allows one run manager per process).

Run: .venv/bin/python benchmarks/bench_geant4.py [--geometry ds2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

TIMING = """
import json, sys, time, numpy as np
from calosurrogate.simulate import get_detector
from calosurrogate.simulate.geant4.application import calorimeter
energy, n, scoring = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
app = calorimeter(get_detector(sys.argv[4]), scoring=scoring)
app.simulate(np.full(2, energy), seed=1)  # warm-up: physics tables, first events
start = time.perf_counter()
app.simulate(np.full(n, energy), seed=2)
print(json.dumps({"s_per_shower": (time.perf_counter() - start) / n}))
"""

PHYSICS = """
import json, sys, numpy as np
from calosurrogate.simulate import get_detector
from calosurrogate.simulate.geant4.application import calorimeter
energy, n = float(sys.argv[1]), int(sys.argv[2])
app = calorimeter(get_detector(sys.argv[3]), bookkeeping=True)
showers = app.simulate(np.full(n, energy), seed=3)
t = app.last_totals  # absorber, cells, active outside, leakage
visible = t[:, 1] + t[:, 2]
print(json.dumps({
    "sampling_fraction": float(visible.sum() / t[:, :3].sum()),
    "resolution": float(visible.std(ddof=1) / visible.mean()),
    "leakage_fraction": float(t[:, 3].mean() / energy),
    "readout_fraction": float(t[:, 1].sum() / visible.sum()),
    "zero_voxels": float((showers == 0).mean()),
    "response_stored": float(showers.sum(1).mean() / energy),
}))
"""


def _run(code: str, *args: object) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--geometry", default="ds2")
    parser.add_argument("--quick", action="store_true", help="Fewer showers (a smoke run).")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    counts = {1_000.0: 200, 10_000.0: 60, 100_000.0: 10}  # showers per energy (MeV) for timing and physics
    timing, physics = {}, {}
    for energy, n in counts.items():
        n = max(3, int(n * scale))
        scored = _run(TIMING, energy, n, 1, args.geometry)["s_per_shower"]
        bare = _run(TIMING, energy, n, 0, args.geometry)["s_per_shower"]
        timing[f"{energy / 1e3:g} GeV"] = {"showers": n, "scored_s": round(scored, 4), "bare_s": round(bare, 4),
                                           "overhead": round(scored / bare, 3)}  # fmt: skip
        physics[f"{energy / 1e3:g} GeV"] = {"showers": n, **_run(PHYSICS, energy, n, args.geometry)}
        print(energy, timing[f"{energy / 1e3:g} GeV"], physics[f"{energy / 1e3:g} GeV"], flush=True)
    from calosurrogate.simulate import get_detector
    from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file

    workers = {}
    n = max(8, int(400 * scale))  # long enough that each worker's start (imports, Geant4 set-up) is small
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, 2):
            start = time.perf_counter()
            simulate_geant4_to_file(get_detector(args.geometry), n, Path(tmp) / f"w{w}.h5", "log-uniform:5GeV:20GeV",
                                    seed=4, workers=w, chunk_size=max(2, n // 8), progress=False)  # fmt: skip
            workers[w] = round(n / (time.perf_counter() - start), 2)
    data = {"geometry": args.geometry, "timing": timing, "physics": physics,
            "workers": {"showers": n, "spectrum": "log-uniform:5GeV:20GeV", "showers_per_s": workers,
                        "speed_up": round(workers[2] / workers[1], 2)}}  # fmt: skip
    print(data)
    command = f"python benchmarks/bench_geant4.py --geometry {args.geometry}" + (" --quick" if args.quick else "")
    print("wrote", write_result(f"geant4_{args.geometry}", data, command))


if __name__ == "__main__":
    main()
