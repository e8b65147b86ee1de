"""The fault harness at scale: many kills of every output-writing command, races, and the property tests'
larger profile; the counts and what they left go to results/fault_harness.json (BENCHMARKS.md).

Run: .venv/bin/python benchmarks/fault_harness.py [--kills 10] [--races 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's harness
from _common import write_result
from tests import faults

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--kills", type=int, default=10, help="Kill trials per command (SIGTERM and SIGKILL alternate)."
    )
    parser.add_argument("--races", type=int, default=2, help="Races per command.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        trials = faults.harness(Path(tmp), args.kills, ("simulate", "sample", "evaluate") * args.races, args.seed)
    for t in trials:
        print("ok  " if t.ok else "FAIL", t, flush=True)
    properties = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=harness",
         str(ROOT / "tests" / "test_properties.py")], capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    import tests.conftest  # noqa: F401  (registers the hypothesis profiles)
    from hypothesis import settings

    summary = {
        "trials": [dataclasses.asdict(t) | {"ok": t.ok} for t in trials],
        "kills": sum(t.kind != "race" for t in trials),
        "races": sum(t.kind == "race" for t in trials),
        "failures": sum(not t.ok for t in trials),
        "tracebacks": sum(t.tracebacks for t in trials),
        "property_examples_per_test": settings.get_profile("harness").max_examples,
        "property_tests": properties.stdout.strip().splitlines()[-1] if properties.stdout.strip() else "",
        "property_tests_passed": properties.returncode == 0,
        "seconds": round(time.monotonic() - started),
    }
    print({k: v for k, v in summary.items() if k != "trials"})
    command = "python benchmarks/fault_harness.py " + " ".join(sys.argv[1:])
    print("wrote", write_result("fault_harness", summary, command.strip()))


if __name__ == "__main__":
    main()
