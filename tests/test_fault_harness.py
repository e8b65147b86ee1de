"""The fault harness in CI: real ``calo`` processes killed at random points, and writers racing.

A few trials per command here (``benchmarks/fault_harness.py`` runs many and records them in
BENCHMARKS.md); a new output-writing command joins by adding its :class:`faults.Job`.
"""

from __future__ import annotations

import pytest

from tests import faults


@pytest.mark.slow
def test_kills_and_races_leave_whole_outputs_or_none(tmp_path) -> None:
    trials = faults.harness(tmp_path, kills_per_job=1, races=("sample", "evaluate"), seed=20)
    failures = [t for t in trials if not t.ok]
    assert not failures, "\n".join(map(str, failures))
    assert {t.job for t in trials} == {"simulate", "sample", "train", "evaluate"}
    kinds = {t.job: t.kind for t in trials if t.kind != "race"}
    assert kinds["train"] == "SIGKILL" and set(kinds.values()) == {"SIGKILL", "SIGTERM"}
    # a SIGTERM leaves nothing behind by itself; what a SIGKILL leaves, the next run sweeps
    assert all(not t.leftovers for t in trials if t.kind == "SIGTERM")
    assert all(t.same_weights for t in trials if t.job == "train")
    races = [t for t in trials if t.kind == "race"]
    assert len(races) == 2 and all(t.output == "complete" and t.note.startswith("Error:") for t in races)


def test_harness_sees_a_half_output(tmp_path) -> None:
    """The harness can fail: a truncated file is judged half, a stray partial is a leftover."""
    from pathlib import Path

    import numpy as np

    from calosurrogate.data import write_showers

    path = write_showers(tmp_path / "s.h5", np.ones((100, 1)), np.ones((100, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    job = faults.Job("simulate", [], path, faults._count(100))
    assert faults._state(job) == "half"
    (tmp_path / ".s.h5.host-1.abc.partial").write_text("x")
    assert faults.leftovers(Path(tmp_path)) == [".s.h5.host-1.abc.partial"]
    trial = faults.Trial("simulate", "SIGTERM", output="complete", leftovers=[".s.h5.host-1.abc.partial"])
    assert not trial.ok
