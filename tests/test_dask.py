"""Sharded simulation and generation on a Dask LocalCluster: the same file whatever the number of
workers (and, for simulation, the file one process writes), a rerun after a lost shard makes only
that shard, and ``calo evaluate`` reads the sharded file unchanged."""

from __future__ import annotations

import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from calosurrogate.data import ShowerFile
from calosurrogate.data.shards import shard_folder, shard_path
from calosurrogate.simulate import get_detector, simulate_sharded, simulate_to_file

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # distributed needs it
pytestmark = pytest.mark.slow


def _read(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {name: f[name][:] for name in f}


def test_simulation_shards_equal_one_process_whatever_the_workers(tmp_path) -> None:
    detector = get_detector("ds1-photons")
    whole = simulate_to_file(detector, 1300, tmp_path / "whole.h5", seed=5, progress=False)
    one, _ = simulate_sharded(detector, 1300, tmp_path / "one.h5", seed=5, shard_size=512, workers=1, progress=False)
    two, _ = simulate_sharded(detector, 1300, tmp_path / "two.h5", seed=5, shard_size=512, workers=2, progress=False)
    expected = _read(whole)
    for path in (one, two):
        found = _read(path)
        assert set(found) == set(expected)
        for name in expected:
            np.testing.assert_array_equal(found[name], expected[name], err_msg=f"{path.name}:{name}")
    assert len(list(shard_folder(two).glob("shard-*.h5"))) == 3

    # a lost shard (a killed job's): the rerun makes that one only, and the result is the same
    folder = shard_folder(two)
    kept = {i: shard_path(folder, i).stat().st_mtime_ns for i in (0, 2)}
    shard_path(folder, 1).unlink()
    two.unlink()
    simulate_sharded(detector, 1300, two, seed=5, shard_size=512, workers=2, progress=False)
    assert {i: shard_path(folder, i).stat().st_mtime_ns for i in (0, 2)} == kept
    np.testing.assert_array_equal(_read(two)["showers"], expected["showers"])
    two.unlink()
    with pytest.raises(ValueError, match="other settings"):  # another job's shards are not mixed in
        simulate_sharded(detector, 1300, two, seed=6, shard_size=512, workers=1, progress=False)
    with pytest.raises(ValueError, match="multiple of 256"):
        simulate_sharded(detector, 1300, tmp_path / "bad.h5", shard_size=500, progress=False)


def test_generation_shards_are_the_same_whatever_the_workers(tiny_geometry, tiny_file, tmp_path) -> None:
    import torch

    from calosurrogate.data.stream import ShowerStream
    from calosurrogate.models import build_surrogate
    from calosurrogate.sampling import sample_sharded

    torch.manual_seed(0)
    model = build_surrogate("vae", tiny_geometry, {})
    model.fit_preprocessing(*ShowerStream(tiny_file, model.condition_names, 0, 500, 1, 500, False).all())
    conditions = np.geomspace(1e3, 1e5, 700).reshape(-1, 1)
    one, seconds, _ = sample_sharded(model, conditions, tmp_path / "one.h5", shard_size=300, workers=1, seed=3,
                                     progress=False)  # fmt: skip
    two, _, _ = sample_sharded(model, conditions, tmp_path / "two.h5", shard_size=300, workers=2, seed=3,
                               progress=False)  # fmt: skip
    other, _, _ = sample_sharded(model, conditions, tmp_path / "other.h5", shard_size=300, workers=2, seed=4,
                                 progress=False)  # fmt: skip
    assert seconds > 0
    a, b = _read(one), _read(two)
    np.testing.assert_array_equal(a["showers"], b["showers"])
    np.testing.assert_allclose(a["incident_energies"][:, 0], conditions[:, 0].astype(np.float32))
    assert not np.array_equal(a["showers"], _read(other)["showers"])
    # the shards are not copies of one another: each has its own seed
    assert not np.array_equal(a["showers"][:10], a["showers"][300:310])
    # another model is another job: its shards are not mixed in
    next(model.parameters()).data += 0.01
    one.unlink()
    with pytest.raises(ValueError, match="other settings"):
        sample_sharded(model, conditions, one, shard_size=300, workers=1, seed=3, progress=False)


def test_calo_simulate_workers_and_evaluate_read_the_sharded_file(tmp_path) -> None:
    calo = [sys.executable, "-m", "calosurrogate"]
    common = ["simulate", "--geometry", "ds1-photons", "--n", "1100", "--seed", "2", "--quiet"]
    done = subprocess.run([*calo, *common, "--workers", "2", "--shard-size", "512", "--out", str(tmp_path / "s.h5")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "s.h5.shards" in done.stdout
    refused = subprocess.run([*calo, *common, "--workers", "2", "--out", str(tmp_path / "s.h5")],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and "--force" in refused.stderr and "Traceback" not in refused.stderr
    with ShowerFile(tmp_path / "s.h5") as f:
        assert f.n_showers == 1100
    judged = subprocess.run(
        [*calo, "evaluate", "--generated", str(tmp_path / "s.h5"), "--reference", str(tmp_path / "s.h5"),
         "--geometry", "ds1-photons", "--metrics", "kpd", "--out", str(tmp_path / "eval"), "--no-floors"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert judged.returncode == 0, judged.stderr
    assert (tmp_path / "eval").is_dir() and any((tmp_path / "eval").iterdir())


def test_a_killed_sharded_job_resumes_to_the_same_file(tmp_path) -> None:
    import signal

    out = tmp_path / "killed.h5"
    command = [sys.executable, "-m", "calosurrogate", "simulate", "--geometry", "ds2", "--n", "6144", "--seed", "4",
               "--workers", "2", "--shard-size", "512", "--quiet", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shard_folder(out).glob("shard-*.h5"))) < 2:
        time.sleep(0.2)
    job = psutil.Process(run.pid).children(recursive=True)  # its Dask nannies and workers
    run.send_signal(signal.SIGKILL)
    run.wait()
    # Its workers die with it (die_with_parent); a rerun before the kernel has finished them would
    # rightly keep the partial files of their shards (their writers live) for the next run to sweep.
    psutil.wait_procs(job, timeout=60)
    made = len(list(shard_folder(out).glob("shard-*.h5")))
    assert not out.exists() and 2 <= made < 12, made  # killed part way: some shards, no file
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    whole = simulate_to_file(get_detector("ds2"), 6144, tmp_path / "whole.h5", seed=4, progress=False)
    np.testing.assert_array_equal(_read(out)["showers"], _read(whole)["showers"])
    assert not list(shard_folder(out).glob(".*partial*"))  # what the kill left of a shard was swept


_GIL_HOLDER = """
import os, re, sys, time
from calosurrogate.cluster import dask_client

def worker_pid():
    return os.getpid()

def hold_the_gil():
    re.match(r"(a+)+b", "a" * 34)  # the re module's backtracking holds the GIL for minutes

if __name__ == "__main__":
    with dask_client(workers=1) as client:
        print(client.submit(worker_pid, pure=False).result(), flush=True)
        client.submit(hold_the_gil, pure=False)
        time.sleep(600)
"""


def test_local_workers_die_at_once_with_a_killed_job(tmp_path) -> None:
    """Dask's own watch of the parent is a thread of the worker, which waits for the GIL; a task
    holding the GIL kept the worker of a SIGKILLed job alive for as long as the task ran."""
    import signal

    script = tmp_path / "job.py"
    script.write_text(_GIL_HOLDER)
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = psutil.Process(int(job.stdout.readline()))
    try:
        deadline = time.time() + 30
        while worker.cpu_percent(0.2) < 50 and time.time() < deadline:  # the task is running
            pass
        job.send_signal(signal.SIGKILL)
        job.wait()
        gone, _ = psutil.wait_procs([worker], timeout=10)
        assert gone, "the killed job's worker outlived it by 10 s"
    finally:
        if worker.is_running():
            worker.kill()
