"""The fault harness: real ``calo`` processes killed at random points, and writers racing for one output.

Used by ``tests/test_fault_harness.py`` (a few trials in CI) and by
``benchmarks/fault_harness.py`` (many trials, recorded in BENCHMARKS.md). Every command that
writes an output is described once by a :class:`Job`: how to run it, how to tell a complete
output, and how to finish it after a kill. A trial then checks the promises:

- killed at any point (SIGTERM or SIGKILL), the output is complete or absent, never half;
- after SIGTERM no partial file or lock is left; after SIGKILL the re-run sweeps them;
- the re-run (``--resume`` for training) completes, and a resumed training ends with the
  weights of an uninterrupted one;
- of two jobs started together on one output, exactly one succeeds, the other fails with one
  line, and the output is the winner's, complete.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALO = [sys.executable, "-m", "calosurrogate.cli"]


@dataclass
class Job:
    """One output-writing command.

    Attributes:
        name: Short name (``simulate``, ``sample``, ...).
        args: Command-line arguments after ``calo``, the output included.
        output: The file or folder it writes.
        complete: Whether an existing output is whole (reads it).
        folder: What a trial removes before it starts (default: ``output``): a training run's folder.
        resume_args: Arguments that finish the job after a kill when a checkpoint was left
            (``--resume``); otherwise the job is run again with ``args``.
    """

    name: str
    args: list[str]
    output: Path
    complete: Callable[[Path], bool]
    folder: Path | None = None
    resume_args: list[str] | None = None


@dataclass
class Trial:
    """What one kill or race left behind."""

    job: str
    kind: str  # "SIGTERM", "SIGKILL" or "race"
    delay_s: float = 0.0
    output: str = ""  # "complete", "absent" or "half" (a failure)
    leftovers: list[str] = field(default_factory=list)  # partial files and locks after the killed run
    swept: bool = True  # the re-run left no partial or lock
    rerun_ok: bool = True
    same_weights: bool | None = None
    tracebacks: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        clean = not self.leftovers if self.kind != "SIGKILL" else True
        return (self.output in ("complete", "absent") and clean and self.swept and self.rerun_ok
                and self.same_weights is not False and self.tracebacks == 0)  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``calo ARGS`` to its end."""
    return subprocess.run([*CALO, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def leftovers(folder: Path) -> list[str]:
    """Partial files and locks anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".partial", ".calo.lock")))


def _state(job: Job) -> str:
    if not job.output.exists():
        return "absent"
    try:
        return "complete" if job.complete(job.output) else "half"
    except Exception:  # unreadable: half written
        return "half"


def kill_trial(job: Job, workdir: Path, delay_s: float, sig: signal.Signals, reference: Path | None = None) -> Trial:
    """Start ``job``, send ``sig`` after ``delay_s``, judge what is left, then finish it and judge again."""
    trial = Trial(job.name, sig.name, delay_s)
    process = subprocess.Popen([*CALO, *job.args], cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        process.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    trial.tracebacks += err.count("Traceback")
    if process.returncode == 0:
        trial.note = "finished before the signal"
    trial.output = _state(job)
    trial.leftovers = leftovers(workdir)
    if trial.output != "complete":
        resumable = job.resume_args is not None and job.folder is not None and (job.folder / "checkpoint.pt").exists()
        again = run(job.resume_args if resumable else job.args, workdir)
        trial.tracebacks += again.stderr.count("Traceback")
        trial.rerun_ok = again.returncode == 0 and _state(job) == "complete"
        if not trial.rerun_ok:
            trial.note += f" re-run: {again.stderr.strip().splitlines()[-1:] or again.returncode}"
    trial.swept = not leftovers(workdir)
    if reference is not None and trial.rerun_ok:
        trial.same_weights = same_weights(job.output, reference)
    return trial


def same_weights(a: Path, b: Path) -> bool:
    """Whether two model files hold identical weights."""
    import torch

    sa = torch.load(a, weights_only=True)["state_dict"]
    sb = torch.load(b, weights_only=True)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def race_trial(job: Job, workdir: Path) -> Trial:
    """Start ``job`` twice at once on one output: exactly one must win."""
    trial = Trial(job.name, "race")
    first, second = (subprocess.Popen([*CALO, *job.args], cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2))  # fmt: skip
    outcomes = [(*p.communicate(timeout=300), p.returncode) for p in (first, second)]
    codes = sorted(code for _, _, code in outcomes)
    trial.tracebacks = sum(err.count("Traceback") for _, err, _ in outcomes)
    # the loser's message: its lines that are not a progress bar
    losers = [[line for line in err.splitlines() if line.startswith("Error")] for _, err, code in outcomes if code]
    trial.output = _state(job)
    trial.leftovers = leftovers(workdir)
    trial.swept = not trial.leftovers
    trial.rerun_ok = codes == [0, 1] and len(losers) == 1 and len(losers[0]) == 1
    trial.note = losers[0][0] if losers and losers[0] else f"exit codes {codes}"
    return trial


def clear(job: Job) -> None:
    """Remove a job's output (and what a killed run left), to start the next trial afresh."""
    target = job.folder or job.output
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    for p in target.parent.glob(f".{target.name}.*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


# ------------------------------------------------------------------------------------------ the jobs
def _count(n: int) -> Callable[[Path], bool]:
    def complete(path: Path) -> bool:
        from calosurrogate.data import ShowerFile

        with ShowerFile(path) as f:
            return f.n_showers == n and f.read(n - 1, n).showers.shape[0] == 1

    return complete


def _evaluation_complete(path: Path) -> bool:
    import json

    json.loads((path / "metrics.json").read_text())
    return (path / "report.html").read_text().rstrip().endswith("</html>") and (path / "summary.md").is_file()


def _training_complete(epochs: int) -> Callable[[Path], bool]:
    def complete(model_file: Path) -> bool:
        import torch

        log = model_file.parent / "log.csv"
        rows = log.read_text().strip().splitlines() if log.exists() else []
        return "state_dict" in torch.load(model_file, weights_only=True) and len(rows) == epochs + 1

    return complete


def make_jobs(workdir: Path, scale: int = 1) -> dict[str, Job]:
    """The commands under test, on small data made in ``workdir`` (a tiny geometry, a tiny VAE).

    ``scale`` multiplies their sizes (longer runs give the kills more points to land on).
    """
    from calosurrogate.data import write_showers
    from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer
    from calosurrogate.simulate import ShowerSimulator, get_detector

    workdir.mkdir(parents=True, exist_ok=True)
    edges = (0.0, 5.0, 12.0, 40.0)
    geometry = CylindricalGeometry("tiny", "electron", tuple(CylindricalLayer(i, edges, 4) for i in range(3)))
    xml = geometry.to_xml(workdir / "tiny.xml", force=True)
    if not (workdir / "data.h5").exists():
        import dataclasses

        from calosurrogate.geometry import LayerStack

        base = get_detector("ds2")
        detector = dataclasses.replace(base, name="tiny", geometry=geometry,
                                       stack=LayerStack.uniform(base.stack.material, 3, 4.0),
                                       profile_tables=None)  # fmt: skip
        energies, showers = ShowerSimulator(detector).sample(4000, "log-uniform:1GeV:100GeV", seed=4)
        write_showers(workdir / "data.h5", energies, showers)
        energies, showers = ShowerSimulator(detector).sample(4000, "log-uniform:1GeV:100GeV", seed=5)
        write_showers(workdir / "other.h5", energies, showers)
    if not (workdir / "model" / "model.pt").exists():
        result = run(["train", "--model", "vae", "--data", "data.h5", "--geometry", str(xml), "--out", "model",
                      "--set", "model.hidden=16", "--set", "model.latent=4", "--set", "train.epochs=1"], workdir)  # fmt: skip
        assert result.returncode == 0, result.stderr
    n_sim, n_sample, epochs = 4000 * scale, 100_000 * scale, 4 * scale
    train_args = ["train", "--model", "vae", "--data", "data.h5", "--geometry", str(xml), "--set", "model.hidden=64",
                  "--set", "model.latent=8", "--set", f"train.epochs={epochs}", "--set", "train.batch_size=100"]  # fmt: skip
    eval_args = ["evaluate", "--reference", "data.h5", "--generated", "other.h5", "--geometry", str(xml), "--fast",
                 "--metrics", "kpd", "--no-floors", "--out", "ev"]  # fmt: skip
    simulate = ["simulate", "--geometry", "ds2", "--n", str(n_sim), "--out", "sim.h5", "--quiet"]
    sample = ["sample", "--run", "model", "--n", str(n_sample), "--energies", "fixed:10GeV", "--batch-size", "2000"]
    return {
        "simulate": Job("simulate", simulate, workdir / "sim.h5", _count(n_sim)),
        "sample": Job("sample", [*sample, "--out", "gen.h5"], workdir / "gen.h5", _count(n_sample)),
        "train": _train_job(train_args, workdir, "run", epochs, resumable=True),
        "evaluate": Job("evaluate", eval_args, workdir / "ev", _evaluation_complete),
        "train_reference": _train_job(train_args, workdir, "run_ref", epochs, resumable=False),
    }


def _train_job(train_args: list[str], workdir: Path, out: str, epochs: int, resumable: bool) -> Job:
    resume = [*train_args, "--out", out, "--resume"] if resumable else None
    return Job("train", [*train_args, "--out", out], workdir / out / "model.pt", _training_complete(epochs),
               folder=workdir / out, resume_args=resume)  # fmt: skip


def harness(workdir: Path, kills_per_job: int, races: tuple[str, ...], seed: int = 0, scale: int = 1) -> list[Trial]:
    """Run ``kills_per_job`` kill trials of every job (SIGKILL and SIGTERM alternating, over the
    trials of a job and from one job to the next, so that one trial a job still sends both signals
    across the jobs; at random fractions of the job's uninterrupted duration) and one race of each
    job in ``races``."""
    jobs = make_jobs(workdir, scale)
    rng = np.random.default_rng(seed)
    reference = jobs.pop("train_reference")
    clear(reference)
    start = time.monotonic()
    assert run(reference.args, workdir).returncode == 0
    durations = {"train": time.monotonic() - start}
    trials = []
    for j, (name, job) in enumerate(jobs.items()):
        if name not in durations:
            clear(job)
            start = time.monotonic()
            finished = run(job.args, workdir)
            assert finished.returncode == 0, finished.stderr
            durations[name] = time.monotonic() - start
        for k in range(kills_per_job):
            clear(job)
            sig = signal.SIGKILL if (j + k) % 2 == 0 else signal.SIGTERM
            delay = float(rng.uniform(0.1, 0.95)) * durations[name]
            trials.append(kill_trial(job, workdir, delay, sig, reference.output if name == "train" else None))
    for name in races:
        clear(jobs[name])
        trials.append(race_trial(jobs[name], workdir))
    return trials
