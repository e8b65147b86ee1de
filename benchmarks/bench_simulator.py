"""Simulator throughput: showers per second, in memory and written to a gzip HDF5 file.

Run: .venv/bin/python benchmarks/bench_simulator.py [--n 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from calosurrogate.simulate import ShowerSimulator, get_detector, simulate_to_file


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    rows = {}
    for name, n in (("ds2", args.n), ("ds1-photons", args.n), ("ds3", max(args.n // 10, 500))):
        detector = get_detector(name)
        simulator = ShowerSimulator(detector)
        start = time.perf_counter()
        simulator.sample(n, detector.default_spectrum, seed=1)
        in_memory = n / (time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            simulate_to_file(detector, n, Path(tmp) / "sim.h5", seed=1, progress=False)
            to_file = n / (time.perf_counter() - start)
        rows[name] = {
            "n": n,
            "showers_per_s_in_memory": round(in_memory, 1),
            "showers_per_s_to_gzip_file": round(to_file, 1),
        }
        print(name, rows[name])
    path = write_result("simulator", {"results": rows}, f"python benchmarks/bench_simulator.py --n {args.n}")
    print("wrote", path)


if __name__ == "__main__":
    main()
