"""The geant4 engine on tiny runs: energy conservation, sampling fraction, reproducibility,
resuming, and one clear line where the bindings or a compiler are missing."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from calosurrogate.simulate.geant4 import build


def _installed(name: str) -> bool:
    try:
        return bool(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return False


needs_geant4 = pytest.mark.skipif(
    not _installed("geant4-pybind"), reason="geant4-pybind not installed (pip install 'calosurrogate[geant4]')"
)


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (Geant4 allows one run manager per process)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _calo(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "calosurrogate.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@needs_geant4
def test_energy_is_conserved_and_the_sampling_fraction_is_the_datasets() -> None:
    out = _python(
        "import json, numpy as np\n"
        "from calosurrogate.simulate import get_detector\n"
        "from calosurrogate.simulate.geant4.application import calorimeter\n"
        "app = calorimeter(get_detector('ds2'), bookkeeping=True)\n"
        "showers = app.simulate(np.full(6, 1000.0), seed=5)\n"
        "lib = app._library\n"
        "print(json.dumps({'totals': app.last_totals.tolist(), 'stored': showers.sum(1).tolist(),\n"
        "                  'largest': lib.calo_g4em_largest_object(), 'block': lib.calo_g4em_block_size()}))\n"
    )
    data = json.loads(out.strip().splitlines()[-1])
    totals = np.array(data["totals"])  # absorber, read-out cells, active outside the cells, leakage (MeV)
    assert np.all(np.abs(totals.sum(axis=1) - 1000.0) < 10.0)  # within 1% of the incident energy
    assert np.all(totals[:, 3] < 50.0)  # 36 X0 deep and twice the read-out radius wide
    sampling = totals[:, 1:3].sum() / totals[:, :3].sum()
    assert 0.030 < sampling < 0.035
    # stored voxels are the cells' energy over the dataset's 0.033 (less what falls below the threshold)
    assert np.allclose(np.array(data["stored"]) * 0.033, totals[:, 1], rtol=0.02)
    # every Geant4 object the physics list built fitted in the block it was given
    assert 0 < data["largest"] < data["block"]


@needs_geant4
def test_the_ds1_photon_stack_conserves_energy_and_stores_the_deposited_energy() -> None:
    out = _python(
        "import json, numpy as np\n"
        "from calosurrogate.simulate import get_detector\n"
        "from calosurrogate.simulate.geant4.application import calorimeter\n"
        "app = calorimeter(get_detector('ds1-photons'), bookkeeping=True)\n"
        "showers = app.simulate(np.full(16, 1024.0), seed=3)\n"
        "print(json.dumps({'totals': app.last_totals.tolist(), 'stored': showers.sum(1).tolist()}))\n"
    )
    data = json.loads(out.strip().splitlines()[-1])
    totals = np.array(data["totals"])  # absorber, cells, active outside, leakage, passive (MeV)
    assert np.all(np.abs(totals.sum(axis=1) - 1024.0) < 10.24)
    assert np.all(totals[:, 4] > 0)  # the lead before the presampler takes its share
    sampling = totals[:, 1:3].sum() / totals[:, :3].sum()
    assert abs(sampling / 0.243 - 1) < 0.08  # the layout's sampling fraction (measured at 2-8 GeV)
    # stored: the deposited energy of the sampling layers (cells over the sampling fraction)
    assert np.allclose(np.array(data["stored"]) * 0.243, totals[:, 1], rtol=0.02)


@needs_geant4
def test_same_seed_same_file_whatever_the_workers_and_a_killed_run_resumes(tmp_path) -> None:
    common = ["simulate", "--engine", "geant4", "--geometry", "ds2", "--n", 6, "--energy", "log-uniform:1GeV:2GeV",
              "--chunk-size", 2, "--quiet"]  # fmt: skip
    one = _calo(*common, "--seed", 7, "--out", tmp_path / "one.h5", "--workers", 1)
    two = _calo(*common, "--seed", 7, "--out", tmp_path / "two.h5", "--workers", 2)
    other = _calo(*common, "--seed", 8, "--out", tmp_path / "other.h5")
    assert one.returncode == two.returncode == other.returncode == 0, one.stderr + two.stderr
    read = lambda name: h5py.File(tmp_path / name)["showers"][:]  # noqa: E731
    assert np.array_equal(read("one.h5"), read("two.h5")) and read("one.h5").sum() > 0
    assert not np.array_equal(read("one.h5"), read("other.h5"))
    with h5py.File(tmp_path / "one.h5") as f:
        assert "Geant4" in f.attrs["generator"] and "no fluorescence" in f.attrs["physics"]
        assert f["incident_energies"].shape == (6, 1)
    assert not list(tmp_path.glob(".*"))  # the parts folder went with the finished run
    # a run killed after its first chunk: the chunk is there, the output is not; the rerun finishes it
    _python(
        "from pathlib import Path\n"
        "from calosurrogate.data.spectra import EnergySpectrum\n"
        "from calosurrogate.simulate.geant4 import engine\n"
        f"out = Path({str(tmp_path / 'resumed.h5')!r}); parts = out.parent / ('.' + out.name + '.geant4-parts')\n"
        "spectrum = EnergySpectrum.parse('log-uniform:1GeV:2GeV')\n"
        "manifest = {'detector': 'ds2', 'n': 6, 'spectrum': spectrum.spec, 'seed': 7, 'chunk_size': 2,\n"
        "            'bindings': engine.PINNED, 'format': 1}\n"
        "engine._prepare_parts(parts, manifest, False)\n"
        "conditions, g4_seed = engine._chunk_plan(6, 2, spectrum, 7)[0]\n"
        "engine._run_chunk('ds2', 0, conditions, g4_seed, str(parts))\n"
    )
    assert (
        not (tmp_path / "resumed.h5").exists() and (tmp_path / ".resumed.h5.geant4-parts" / "chunk_000000.npz").exists()
    )
    resumed = _calo(*common, "--seed", 7, "--out", tmp_path / "resumed.h5")
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(read("resumed.h5"), read("one.h5"))
    # chunks of other settings are refused in one line, not mixed in
    (tmp_path / ".clash.h5.geant4-parts").mkdir()
    (tmp_path / ".clash.h5.geant4-parts" / "manifest.json").write_text('{"seed": 99}')
    clash = _calo(*common, "--seed", 7, "--out", tmp_path / "clash.h5")
    assert clash.returncode != 0 and "other settings" in clash.stderr and "Traceback" not in clash.stderr


@needs_geant4
def test_a_cheap_production_cut_keeps_the_primaries_and_records_its_cost(tmp_path) -> None:
    common = ["simulate", "--engine", "geant4", "--geometry", "ds2", "--n", 4, "--energy", "log-uniform:5GeV:10GeV",
              "--seed", 3, "--quiet"]  # fmt: skip
    nominal = _calo(*common, "--out", tmp_path / "nominal.h5")
    cheap = _calo(*common, "--range-cut", 10, "--out", tmp_path / "cheap.h5")
    assert nominal.returncode == cheap.returncode == 0, nominal.stderr + cheap.stderr
    with h5py.File(tmp_path / "nominal.h5") as n, h5py.File(tmp_path / "cheap.h5") as c:
        np.testing.assert_array_equal(n["incident_energies"][:], c["incident_energies"][:])
        np.testing.assert_array_equal(c["pairing_index"][:], np.arange(4))
        assert not np.array_equal(n["showers"][:], c["showers"][:])  # the cut changes the showers
        assert c.attrs["range_cut_mm"] == 10.0 and n.attrs["range_cut_mm"] == 0.7
        assert "production cut 10.0 mm" in c.attrs["physics"]
        assert 0 < c.attrs["cpu_seconds_per_shower"] < 60 and 0 < n.attrs["cpu_seconds_per_shower"] < 60
    refused = _calo("simulate", "--geometry", "ds2", "--n", 2, "--range-cut", 10, "--out", tmp_path / "x.h5")
    assert refused.returncode != 0 and "--engine geant4" in refused.stderr


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_run_takes_its_workers_with_it(tmp_path) -> None:
    import os
    import signal
    import time

    command = [sys.executable, "-m", "calosurrogate.cli", "simulate", "--engine", "geant4", "--geometry", "ds2",
               "--n", "40", "--energy", "fixed:50GeV", "--chunk-size", "1", "--workers", "2", "--shard-size", "4", "--quiet",
               "--out", str(tmp_path / "killed.h5")]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    shards: list[int] = []  # each Dask worker runs its Geant4 shard in a process of its own
    while time.time() < deadline and (len(workers) < 2 or not shards):
        time.sleep(0.5)
        workers = [p for p in _children(run.pid) if b"spawn_main" in _cmdline(p)]
        shards = [p for w in workers for p in _children(w) if b"calosurrogate.simulate.geant4" in _cmdline(p)]
    assert len(workers) == 2 and shards, "the workers never started their shards"
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 30
    alive = workers + shards
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [
            p
            for p in workers
            if Path(f"/proc/{p}").exists()
            and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        ]
    for p in alive:  # do not leave them behind, whatever the outcome
        os.kill(p, signal.SIGKILL)
    assert not alive, (
        f"workers outlived their killed run: {[Path(f'/proc/{p}/stat').read_text()[:80] for p in alive if Path(f'/proc/{p}').exists()]}"
    )


def test_a_missing_or_other_wheel_and_a_missing_compiler_each_get_one_clear_line(monkeypatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(build.Geant4Unavailable, match=r"geant4-pybind==0\.1\.3: pip install 'calosurrogate\[geant4\]'"):
        build.bindings()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.1.2")
    with pytest.raises(build.Geant4Unavailable, match=r"0\.1\.2 is installed"):
        build.bindings()
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(build.Geant4Unavailable, match=r"no C\+\+ compiler"):
        build._compiler()
    # the command line says it in one line, without a traceback
    from click.testing import CliRunner

    from calosurrogate.cli import main

    monkeypatch.setattr(importlib.metadata, "version", missing)
    result = CliRunner().invoke(main, ["simulate", "--engine", "geant4", "--n", "2", "--out", "x.h5"])
    assert result.exit_code != 0 and "pip install 'calosurrogate[geant4]'" in result.output
    assert "Traceback" not in result.output


def test_a_detector_without_a_geant4_layout_is_refused(tmp_path) -> None:
    import dataclasses

    from calosurrogate.simulate import get_detector
    from calosurrogate.simulate.geant4.engine import simulate_geant4_to_file

    custom = dataclasses.replace(get_detector("ds2"), name="my-detector")
    with pytest.raises(ValueError, match="not my-detector: use --engine fast"):
        simulate_geant4_to_file(custom, 2, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


@needs_geant4
def test_the_fast_simulation_model_is_reached_through_its_own_slots_and_replaces_the_shower() -> None:
    """Proves the compiled subclass's layout against the wheel: Geant4 calls IsApplicable,
    ModelTrigger, DoIt and Flush, nothing lands in the at-rest slots, the manager found the model by
    its name (attach succeeded), and the state read from G4FastTrack is the particle's own."""
    out = _python(
        "import json, numpy as np\n"
        "from calosurrogate.simulate import get_detector\n"
        "from calosurrogate.simulate.geant4.application import calorimeter\n"
        "app = calorimeter(get_detector('ds2'), fast_simulation=True)\n"
        "energies = np.array([2000.0, 500.0, 3000.0])\n"
        "full = app.simulate(energies, seed=4)\n"
        "after_full = app.fast_simulation_calls\n"
        "seen = []\n"
        "def model(e):\n"
        "    seen.append(e.tolist()); out = np.zeros((len(e), 6480)); out[:, 7] = e; return out\n"
        "fast = app.simulate(energies, seed=4, shower_model=model, threshold_mev=1000.0)\n"
        "taken = app.last_taken.tolist()\n"
        "def broken(e):\n"
        "    raise ArithmeticError('the model failed')\n"
        "try:\n"
        "    app.simulate(energies[:1], seed=4, shower_model=broken, threshold_mev=1000.0)\n"
        "    error = None\n"
        "except ArithmeticError as err:\n"
        "    error = str(err)\n"
        "print(json.dumps({'full': full.sum(1).tolist(), 'fast': fast.tolist() and fast.sum(1).tolist(),\n"
        "                  'fast7': fast[:, 7].tolist(), 'taken': taken, 'seen': seen,\n"
        "                  'after_full': after_full, 'calls': app.fast_simulation_calls, 'error': error}))\n"
    )
    data = json.loads(out.strip().splitlines()[-1])
    # switched off, the model is never asked and Geant4 simulates every shower in full
    assert all(count == 0 for count in data["after_full"].values())
    assert all(total > 0.5 * energy for total, energy in zip(data["full"], [2000, 500, 3000], strict=True))
    # on: the 2 and 3 GeV primaries are taken on entering, with exactly the energy the gun shot,
    # one call per event; the 0.5 GeV one, below the threshold, is simulated in full
    assert np.allclose(data["seen"], [[2000.0], [3000.0]], rtol=1e-9, atol=0)
    assert data["taken"] == [1, 0, 1]
    assert np.allclose(data["fast7"][::2], [2000.0, 3000.0], rtol=1e-9, atol=0)
    assert np.allclose(data["fast"][::2], [2000.0, 3000.0], rtol=1e-9, atol=0)  # killed: Geant4 deposited nothing
    assert 0.5 * 500 < data["fast"][1] < 1.2 * 500 and data["fast7"][1] < 500
    calls = data["calls"]
    assert calls["layout_errors"] == 0
    assert calls["IsApplicable"] >= 1 and calls["DoIt"] == 3  # two above, and the failing run's one
    assert calls["ModelTrigger"] > calls["DoIt"]  # asked at every step of the 0.5 GeV shower too
    assert calls["AtRestModelTrigger"] == calls["AtRestDoIt"] == 0
    assert calls["Flush"] == 4  # Geant4 flushes the models at the end of every event
    # an exception in the model surfaces from simulate(), it is not lost inside Geant4
    assert data["error"] == "the model failed"


@needs_geant4
def test_a_surrogate_inside_geant4_writes_the_same_events_in_full_and_fast_simulation(tmp_path) -> None:
    out = _python(
        "import json, numpy as np, torch\n"
        "from calosurrogate.geometry import get_geometry\n"
        "from calosurrogate.models import build_surrogate\n"
        "from calosurrogate.sampling.geant4_fastsim import simulate_full_and_fast\n"
        "model = build_surrogate('vae', get_geometry('ds2'), {'latent': 4, 'hidden': 16, 'layers': 1})\n"
        "showers = torch.rand(8, 6480); showers[showers < 0.9] = 0\n"
        "model.fit_preprocessing(showers * 100, torch.full((8, 1), 2000.0))\n"
        "model.condition_range = ([1000.0], [4000.0])\n"
        f"model.save({str(tmp_path / 'model.pt')!r})\n"
        "angled = build_surrogate('vae', get_geometry('ds2'), {'latent': 4, 'hidden': 16, 'layers': 1},\n"
        "                         ('incident_energies', 'incident_angles'))\n"
        "angled.fit_preprocessing(showers * 100, torch.full((8, 2), 2000.0))\n"
        f"angled.save({str(tmp_path / 'angled.pt')!r})\n"
        f"run = simulate_full_and_fast(model, 4, {str(tmp_path)!r}, 'log-uniform:1.5GeV:3GeV', seed=2,\n"
        "                              events_per_call=3)\n"
        "print(json.dumps(run.as_dict()))\n"
    )
    run = json.loads(out.strip().splitlines()[-1])
    assert run["n"] == 4 and run["taken"] == 4 and run["events_per_call"] == 3
    assert run["ms_per_event_full"] > 0 and run["ms_per_event_fast"] > 0 and run["speedup"] > 0
    with h5py.File(tmp_path / "full.h5") as full, h5py.File(tmp_path / "fast.h5") as fast:
        assert np.array_equal(full["incident_energies"][:], fast["incident_energies"][:])
        assert 1500 <= full["incident_energies"][:].min() and full["incident_energies"][:].max() <= 3000
        assert "full simulation" in full.attrs["generator"] and "vae" in fast.attrs["generator"]
        assert full["showers"][:].sum() > 0 and fast["showers"].shape == (4, 6480)
    # the same command refuses to overwrite, and a model with another condition is refused in one line
    again = _calo("geant4-fastsim", "--run", tmp_path / "model.pt", "--n", 2, "--out", tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
    angled = _calo("geant4-fastsim", "--run", tmp_path / "angled.pt", "--n", 2, "--out", tmp_path / "angled")
    assert angled.returncode != 0 and "incident_angles" in angled.stderr and "Traceback" not in angled.stderr


@needs_geant4
def test_paraflow_in_geant4_bends_converted_pairs_along_y_and_stores_the_fast_engines_layout(tmp_path) -> None:
    """Photons through 1.5 X0 of iron 90 cm in front of the crystals: most convert, and the 4 T field
    along x pulls the pair apart along y (the window's long side), so the showers spread more in y
    than in x; the window holds nearly all the energy and the file the plate's conditions."""
    out = tmp_path / "g4.h5"
    done = _calo("simulate", "--geometry", "paraflow", "--engine", "geant4", "--n", 16, "--chunk-size", 8,
                 "--energy", "uniform:20GeV:21GeV", "--condition", "plate_thickness=1.5", "--condition",
                 "plate_distance=90", "--seed", 3, "--out", out, "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        assert "Geant4" in f.attrs["generator"] and "4 T" in f.attrs["physics"]
        images = f["showers"][:].reshape(-1, 8, 16)
        energies = f["incident_energies"][:].ravel()
        assert np.all(f["plate_thickness"][:] == 1.5) and np.all(f["plate_distance"][:] == 90.0)
    contained = images.sum((1, 2)) / energies
    assert np.all((contained > 0.6) & (contained < 1.02)), contained

    def spread(profile: np.ndarray) -> np.ndarray:
        axis = np.arange(profile.shape[1])
        mean = (profile * axis).sum(1) / profile.sum(1)
        return np.sqrt((profile * (axis - mean[:, None]) ** 2).sum(1) / profile.sum(1))

    assert spread(images.sum(2)).mean() < 0.6 * spread(images.sum(1)).mean()


@needs_geant4
def test_ild_ecal_in_geant4_gives_angled_point_clouds_like_the_fast_engine(tmp_path) -> None:
    from calosurrogate.data import EnergySpectrum
    from calosurrogate.data.points import project, read_point_clouds
    from calosurrogate.geometry import ild_ecal
    from calosurrogate.metrics.point_clouds import angular_errors, principal_axes
    from calosurrogate.simulate.points import PointShowerSimulator

    out = tmp_path / "g4.h5"
    done = _calo("simulate", "--geometry", "ild-ecal", "--engine", "geant4", "--n", "8", "--energy", "fixed:20GeV",
                 "--chunk-size", "4", "--seed", "3", "--out", out, "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    geant4 = read_point_clouds(out)
    geometry = ild_ecal()
    # the same conditions as the fast engine would draw, chunk by chunk
    rng = np.random.default_rng([3, 0])
    _, directions, _ = PointShowerSimulator(geometry).conditions(4, EnergySpectrum.parse("fixed:20GeV"), rng)
    np.testing.assert_allclose(geant4.directions[:4], directions)
    # deposits at sub-cell centres, in the local frame, pointing along the photon
    hits = project(geant4, geometry).above(geometry.mip_mev / 2)
    axes = principal_axes(hits, geometry, geant4.directions, geant4.entry_points, top_fraction=0.05)
    assert np.median(np.degrees(angular_errors(axes, geant4.directions))) < 3.0
    visible = np.bincount(geant4.shower_index, weights=geant4.points[:, 3])
    fast = PointShowerSimulator(geometry).sample(50, "fixed:20GeV", seed=1)
    fast_visible = np.bincount(fast.shower_index, weights=fast.points[:, 3])
    assert np.mean(visible) == pytest.approx(np.mean(fast_visible), rel=0.3)
    with h5py.File(out) as f:
        assert f.attrs["cpu_seconds_per_shower"] > 0 and "Geant4" in f.attrs["generator"]
