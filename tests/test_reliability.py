"""What a hostile but honest user found: each failure, fixed, with the test that failed before the fix.

Issue 20's list, in its order: a short sample file, concurrent writers, unusable incident
energies, tracebacks where one line is promised, SIGTERM and stale partials, file modes, the
closed-file message, --resume with other settings, and the smaller ones.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from calosurrogate._io import OutputExistsError, atomic_output, folder_lock, lock_path, sweep_stale_partials
from calosurrogate.cli import main
from calosurrogate.data import read_showers, write_showers
from calosurrogate.models import build_surrogate
from calosurrogate.models.base import ConfigError, ExtrapolationWarning
from calosurrogate.sampling import sample_to_file
from calosurrogate.training import TrainConfig, train

SMALL_VAE = {"hidden": 16, "latent": 4}


def _run(args: list[str]):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def _one_line_error(result, *needles: str) -> str:
    """The command failed with one error line holding every needle (click's usage errors add a hint line)."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tiny_geometry, tmp_path_factory) -> Path:
    """A fitted (untrained) VAE on the tiny geometry, saved as a run folder."""
    torch.manual_seed(0)
    incident = torch.exp(torch.empty(200, 1).uniform_(7.0, 11.0))
    showers = torch.rand(200, tiny_geometry.n_voxels) * incident / 100
    model = build_surrogate("vae", tiny_geometry, SMALL_VAE)
    model.fit_preprocessing(showers, incident)
    model.condition_range = ([float(incident.min())], [float(incident.max())])
    run = tmp_path_factory.mktemp("run")
    model.save(run / "model.pt")
    return run


@pytest.fixture(scope="module")
def tiny_xml(tmp_path_factory) -> Path:
    """The tiny test binning as an XML file (the command line knows it by that)."""
    return _tiny_xml(tmp_path_factory.mktemp("xml") / "tiny.xml")


def _energies_file(path: Path, energies: np.ndarray, n_voxels: int = 36) -> Path:
    with h5py.File(path, "w") as f:
        f["incident_energies"] = np.asarray(energies, dtype=np.float32).reshape(-1, 1)
        f["showers"] = np.ones((len(energies), n_voxels), dtype=np.float32)
    return path


# 1. a file that says it holds every shower does ---------------------------------------------------------
def test_negative_batch_size_refused(tiny_run, tmp_path) -> None:
    out = tmp_path / "x.h5"
    result = _run(["sample", "--run", tiny_run, "--n", 100, "--batch-size", -5, "--out", out])
    assert result.exit_code == 2 and "--batch-size" in result.output and not out.exists()
    from calosurrogate.models import load_surrogate

    with pytest.raises(ConfigError, match="batch size must be at least 1"):
        sample_to_file(load_surrogate(tiny_run / "model.pt"), np.full((10, 1), 5e3), out, batch_size=-5)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


def test_short_sampler_leaves_no_file(tiny_run, tmp_path) -> None:
    from calosurrogate.models import load_surrogate

    model = load_surrogate(tiny_run / "model.pt")
    full = model.sample_batches

    def drops_the_last_batch(conditions, batch_size, *args):
        yield from list(full(conditions, batch_size, *args))[:-1]

    model.sample_batches = drops_the_last_batch
    with pytest.raises(RuntimeError, match="gave 20 showers for 30 conditions"):
        sample_to_file(model, np.full((30, 1), 5e3), tmp_path / "x.h5", batch_size=10, progress=False)
    assert not list(tmp_path.iterdir())


# 2. two writers of one output: one wins, the other says so --------------------------------------------
def test_concurrent_file_writers_cannot_both_win(tmp_path) -> None:
    path = tmp_path / "g.h5"
    with pytest.raises(OutputExistsError, match="written by another job meanwhile"):
        with atomic_output(path) as first, atomic_output(path) as second:
            first.write_text("first")
            second.write_text("second")
            # the second block ends first and publishes; then the first finds the name taken
    assert path.read_text() == "second"
    path.unlink()
    with pytest.raises(OutputExistsError, match="exists"):
        with atomic_output(path) as third:
            third.write_text("third")
            path.write_text("someone else")  # appears while the third is writing
    assert path.read_text() == "someone else"
    assert [p.name for p in tmp_path.iterdir()] == ["g.h5"]


def test_concurrent_folder_jobs_cannot_interleave(tmp_path) -> None:
    with folder_lock(tmp_path / "eval", "an evaluation"):
        with pytest.raises(OutputExistsError, match="being written by an evaluation of another process"):
            with folder_lock(tmp_path / "eval", "an evaluation"):
                pass
    assert not lock_path(tmp_path / "eval").exists()
    # a lock left by a job that died (a pid that no longer runs on this host) is taken over
    host = __import__("socket").gethostname().replace(".", "_").replace("-", "_")
    lock_path(tmp_path / "eval").write_text(f"{host}-{_dead_pid()}")
    with folder_lock(tmp_path / "eval", "an evaluation"):
        pass


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# 3. incident energies a model cannot use ---------------------------------------------------------------
@pytest.mark.parametrize("bad", [0.0, -5e3])
def test_sample_refuses_non_positive_energies(tiny_run, tmp_path, bad: float) -> None:
    energies = _energies_file(tmp_path / "e.h5", [5e3, bad, 7e3])
    out = tmp_path / "x.h5"
    _one_line_error(_run(["sample", "--run", tiny_run, "--energies", energies, "--out", out]),
                    "e.h5", "[incident_energies]", "zero or negative")  # fmt: skip
    assert not out.exists()
    from calosurrogate.models import load_surrogate

    with pytest.raises(ConfigError, match="zero or negative"):
        sample_to_file(load_surrogate(tiny_run / "model.pt"), np.array([[5e3], [bad]]), out)


# 4. one line, never a traceback -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("assignment", "needles"),
    [
        ("train.epochs=abc", ("epochs", "'abc'", "expected an integer")),
        ("train.epochs=1.5", ("epochs", "1.5", "expected an integer")),
        ("train.learning_rate=fast", ("learning_rate", "'fast'", "expected a number")),
        ("train.ema_decay=[1, 2]", ("ema_decay", "expected")),
        ("model.hidden=true", ("hidden", "True", "expected an integer")),
        ("train.epochs", ("model.KEY=VALUE",)),
    ],
)
def test_wrongly_typed_settings_name_the_key(tiny_file, tiny_xml, tmp_path, assignment: str, needles) -> None:
    result = _run(["train", "--model", "vae", "--data", tiny_file, "--geometry", tiny_xml, "--out", tmp_path / "r",
                   "--set", assignment])  # fmt: skip
    _one_line_error(result, *needles)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_yaml_numbers_without_a_dot_are_numbers() -> None:
    from calosurrogate.models.base import config_from_dict

    assert config_from_dict(TrainConfig, {"learning_rate": "1e-3", "max_minutes": 2}).learning_rate == 1e-3
    assert config_from_dict(TrainConfig, {"max_minutes": 2}).max_minutes == 2.0


def test_zero_and_empty_requests_are_refused(tiny_run, tiny_file, tiny_xml, tmp_path) -> None:
    out = tmp_path / "x.h5"
    result = _run(["sample", "--run", tiny_run, "--n", 0, "--out", out])
    assert result.exit_code == 2 and "--n" in result.output and not out.exists()
    empty = _energies_file(tmp_path / "empty.h5", [])
    _one_line_error(_run(["sample", "--run", tiny_run, "--energies", empty, "--out", out]), "empty.h5", "no showers")
    assert not out.exists()
    args = ["evaluate", "--geometry", tiny_xml, "--out", tmp_path / "ev", "--metrics", "histograms"]
    _one_line_error(_run([*args, "--reference", tiny_file, "--generated", empty]), "empty.h5", "no showers")
    result = _run([*args, "--reference", tiny_file, "--generated", tiny_file, "--max-showers", 0])
    assert result.exit_code == 2 and "--max-showers" in result.output
    result = _run([*args, "--reference", tiny_file, "--generated", tiny_file, "--classifier-runs", 0])
    assert result.exit_code == 2 and "--classifier-runs" in result.output
    _one_line_error(_run([*args[:-1], "", "--reference", tiny_file, "--generated", tiny_file]), "no metric")
    assert not (tmp_path / "ev" / "metrics.json").exists()


def _tiny_xml(path: Path) -> Path:
    from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer

    edges = (0.0, 5.0, 12.0, 40.0)
    geometry = CylindricalGeometry("tiny", "electron", tuple(CylindricalLayer(i, edges, 4) for i in range(3)))
    return geometry.to_xml(path, force=True)


def test_resume_on_a_corrupt_checkpoint(tiny_file, tiny_xml, tmp_path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"\x80\x02 not a checkpoint")
    result = _run(["train", "--data", tiny_file, "--geometry", tiny_xml, "--out", run, "--resume"])
    _one_line_error(result, "checkpoint.pt", "cannot be read as a checkpoint", "--force")


# 5. SIGTERM and SIGKILL leave no partial behind (the kill harness runs the commands: test_fault_harness.py)
def test_stale_partials_of_dead_writers_are_swept(tmp_path) -> None:
    host = __import__("socket").gethostname().replace(".", "_").replace("-", "_")
    dead = tmp_path / f".x.h5.{host}-{_dead_pid()}.abcd1234.partial"
    alive = tmp_path / f".x.h5.{host}-{os.getpid()}.efgh5678.partial"
    elsewhere = tmp_path / ".x.h5.otherhost-1.ijkl9012.partial"
    for path in (dead, alive, elsewhere):
        path.write_text("half")
    with atomic_output(tmp_path / "x.h5") as tmp:
        tmp.write_text("whole")
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    assert sweep_stale_partials(tmp_path) == []


# 6. outputs follow the umask ---------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = write_showers(tmp_path / "s.h5", np.ones((2, 1)), np.ones((2, 3)))
        with atomic_output(tmp_path / "t.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == mode


# 7. the geometry of a file with an unknown voxel count ----------------------------------------------
def test_unknown_voxel_count_without_geometry(tmp_path) -> None:
    data = write_showers(tmp_path / "wrongvox.h5", np.full((10, 1), 5e3), np.ones((10, 37)))
    result = _run(["train", "--data", data, "--out", tmp_path / "r"])
    _one_line_error(result, "wrongvox.h5", "37 voxels", "--geometry")


# 8. --resume with other settings, model or data ----------------------------------------------------
def test_resume_refuses_what_differs_from_the_saved_run(tiny_file, tiny_xml, tmp_path) -> None:
    run = tmp_path / "r"
    base = ["train", "--model", "vae", "--data", tiny_file, "--geometry", tiny_xml, "--out", run, "--set", "model.hidden=16",
            "--set", "model.latent=4", "--set", "train.epochs=1", "--set", "train.batch_size=500"]  # fmt: skip
    assert _run(base).exit_code == 0
    resume = ["train", "--data", tiny_file, "--geometry", tiny_xml, "--out", run, "--resume"]
    assert _run(resume).exit_code == 0  # nothing given: the saved run decides
    _one_line_error(_run([*resume, "--set", "train.epochs=3"]), "train.epochs 1 -> 3", "--force")
    _one_line_error(_run([*resume, "--model", "wgan"]), "model vae -> wgan")
    _one_line_error(_run([*resume, "--set", "model.hidden=32"]), "model.hidden 16 -> 32")
    other = write_showers(tmp_path / "other.h5", np.full((600, 1), 5e3), np.ones((600, 36)))
    _one_line_error(_run(["train", "--data", other, "--geometry", tiny_xml, "--out", run, "--resume"]), "other.h5",
                    "600 showers")  # fmt: skip
    assert _run([*base[:-2], "--set", "train.epochs=2", "--set", "train.batch_size=500", "--force"]).exit_code == 0


# 9. the smaller ones ----------------------------------------------------------------------------------
def test_evaluate_force_removes_the_previous_plots_and_checks_out_first(tiny_file, tiny_xml, tmp_path, monkeypatch):
    xml = tiny_xml
    out = tmp_path / "ev"
    args = ["evaluate", "--geometry", xml, "--reference", tiny_file, "--generated", tiny_file, "--out", out, "--fast"]
    assert _run([*args, "--metrics", "histograms,cfd"]).exit_code == 0
    before = set(os.listdir(out))
    assert "layer_correlations.png" in before and not list(tmp_path.glob(".*"))
    _one_line_error(_run([*args, "--metrics", "histograms"]), "already holds an evaluation", "--force")
    assert _run([*args, "--metrics", "histograms", "--force"]).exit_code == 0
    after = set(os.listdir(out))
    assert "layer_correlations.png" not in after and after < before and not list(tmp_path.glob(".*"))
    # a folder of other files is never replaced, --force or not
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = _run([*args[:-3], "--out", tmp_path / "mine", "--fast", "--metrics", "histograms", "--force"])
    _one_line_error(result, "holds other files")
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    # an --out that cannot be made fails before any showers are read
    import calosurrogate.evaluation as evaluation

    monkeypatch.setattr(evaluation, "evaluate_files", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _run([*args[:-3], "--out", blocker / "ev", "--metrics", "histograms"])
    _one_line_error(result, "a_file")


def test_empty_file_statistics_are_null_not_infinite(tiny_xml, tmp_path) -> None:
    empty = write_showers(tmp_path / "empty.h5", np.ones((0, 1)), np.ones((0, 36)))
    result = _run(["inspect", empty, "--json"])
    assert result.exit_code == 0 and "Infinity" not in result.output
    summary = json.loads(result.output)
    assert summary["n_showers"] == 0 and summary["incident_energy_min"] is None
    assert "no showers" in _run(["inspect", empty]).output
    _one_line_error(_run(["train", "--data", empty, "--geometry", tiny_xml, "--out", tmp_path / "r"]), "holds 0 shower")


def test_far_energies_are_warned(tiny_run, tmp_path) -> None:
    from calosurrogate.models import load_surrogate

    model = load_surrogate(tiny_run / "model.pt")
    with pytest.warns(ExtrapolationWarning, match=r"outside the range seen in training .*\(1 above, up to 1e\+12\)"):
        sample_to_file(model, np.array([[5e3], [1e12]]), tmp_path / "x.h5", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sample_to_file(model, np.array([[5e3], [2e4]]), tmp_path / "y.h5", progress=False)
    result = _run(["simulate", "--geometry", "ds2", "--n", 2, "--energy", "fixed:1e12", "--out", tmp_path / "s.h5",
                   "--quiet"])  # fmt: skip
    assert result.exit_code == 0 and "warning:" in result.output and "extrapolation" in result.output


def test_missing_energies_file_is_named(tiny_run, tmp_path) -> None:
    result = _run(["sample", "--run", tiny_run, "--energies", tmp_path / "nosuchfile.h5", "--out", tmp_path / "x.h5"])
    _one_line_error(result, "nosuchfile.h5", "no such file")


def test_log_seconds_continue_after_resume(tiny_geometry, tiny_file, tmp_path) -> None:
    config = TrainConfig(epochs=3, batch_size=500, device="cpu", seed=1)

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(build_surrogate("vae", tiny_geometry, SMALL_VAE), tiny_file, tmp_path, config, progress=False,
              on_epoch=stop_after_two)  # fmt: skip
    result = train(None, tiny_file, tmp_path, resume=True, progress=False)
    seconds = [row["seconds"] for row in result.history]
    assert len(seconds) == 3 and seconds == sorted(seconds) and seconds[2] > seconds[1]
    logged = (tmp_path / "log.csv").read_text().splitlines()
    assert len(logged) == 4 and float(logged[3].split(",")[-1]) == pytest.approx(seconds[2])


def test_sampled_file_is_whole(tiny_run, tmp_path) -> None:
    out = tmp_path / "x.h5"
    result = _run(["sample", "--run", tiny_run, "--n", 25, "--batch-size", 7, "--energies", "fixed:5GeV", "--out", out])
    assert result.exit_code == 0, result.output
    assert read_showers(out).showers.shape == (25, 36)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_removes_what_the_process_holds_unfinished(tmp_path, sig: str) -> None:
    """Even when the signal lands in a finalizer, where a raised exception would be swallowed."""
    import subprocess
    import sys

    script = f"""
import os, signal, sys
from pathlib import Path
from calosurrogate._io import atomic_folder, atomic_output, folder_lock, remove_partials_on_signal
remove_partials_on_signal()
out = Path(sys.argv[1])
class Finalizer:
    def __del__(self):
        os.kill(os.getpid(), signal.{sig})
with folder_lock(out / "run", "a run"), atomic_output(out / "a.h5") as tmp, atomic_folder(out / "ev") as stage:
    tmp.write_text("half")
    (stage / "metrics.json").write_text("half")
    Finalizer()  # dropped at once: the signal arrives inside __del__
    print("went on after the signal")
"""
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 128 + getattr(__import__("signal"), sig)
    assert "went on" not in result.stdout and f"stopped by {sig}; 3 unfinished output(s) removed" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_evaluate_no_floors_judges_nothing_against_a_floor(tiny_file, tiny_xml, tmp_path) -> None:
    out = tmp_path / "ev"
    args = ["evaluate", "--geometry", tiny_xml, "--reference", tiny_file, "--generated", tiny_file, "--out", out,
            "--fast", "--metrics", "histograms,kpd", "--no-floors"]  # fmt: skip
    assert _run(args).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["floors"] is False
    assert all("floor" not in e for e in [*metrics["scalars"].values(), *metrics["separation_power"].values()])
    assert metrics["verdict"]["status"] == "not judged"
    assert (out / "summary.md").read_text().splitlines()[2].startswith("**Verdict: Not judged")


def test_a_forked_child_stopped_by_sigterm_leaves_its_parents_outputs(tmp_path) -> None:
    """Pools (the report draws its layer figures in forked processes) stop their workers with
    SIGTERM: the handler a worker inherits must not remove the parent's unfinished outputs."""
    import signal as signal_module

    from calosurrogate._io import atomic_output, remove_partials_on_signal

    restore = remove_partials_on_signal()
    try:
        with atomic_output(tmp_path / "result.txt") as partial:
            partial.write_text("half")
            pid = os.fork()
            if pid == 0:  # the child: stopped as a pool stops its workers
                os.kill(os.getpid(), signal_module.SIGTERM)
                os._exit(0)  # not reached: SIGTERM's default action ends the child
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal_module.SIGTERM
            assert partial.exists()  # the parent's partial survived its child
            partial.write_text("whole")
    finally:
        restore()
    assert (tmp_path / "result.txt").read_text() == "whole"
