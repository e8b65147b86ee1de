from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from calosurrogate.cli import main
from calosurrogate.data import read_showers, write_showers


def test_simulate_then_inspect(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "sim.h5"
    args = ["simulate", "--geometry", "ds2", "--n", "300", "--energy", "log-uniform:1GeV:1TeV", "--seed", "1"]
    result = runner.invoke(main, [*args, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_showers(out).showers.shape == (300, 6480)
    result = runner.invoke(main, ["inspect", str(out), "--geometry", "ds2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["n_showers"] == 300 and summary["matching_geometries"] == ["ds2"]
    assert len(summary["layer_mean_energy"]) == 45


def test_refuses_overwrite_without_force(tmp_path) -> None:
    out = tmp_path / "sim.h5"
    write_showers(out, np.ones((2, 1)), np.zeros((2, 368)))
    result = CliRunner().invoke(
        main, ["simulate", "--geometry", "ds1-photons", "--n", "5", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 1
    assert "exists" in result.output and "--force" in result.output
    assert read_showers(out).showers.shape == (2, 368)
    result = CliRunner().invoke(
        main, ["simulate", "--geometry", "ds1-photons", "--n", "5", "--out", str(out), "--quiet", "--force"]
    )
    assert result.exit_code == 0, result.output
    assert read_showers(out).showers.shape == (5, 368)


def test_bad_input_gives_one_clear_line(tmp_path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    result = CliRunner().invoke(main, ["inspect", str(bad)])
    assert result.exit_code == 1
    assert "bad.h5" in result.output and "not a readable HDF5 file" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        main, ["simulate", "--geometry", "ds1-pions", "--n", "5", "--out", str(tmp_path / "p.h5")]
    )
    assert result.exit_code == 1 and "electromagnetic" in result.output


def test_geometry_writes_xml(tmp_path) -> None:
    out = tmp_path / "ds2.xml"
    result = CliRunner().invoke(main, ["geometry", "ds2", "--xml", str(out)])
    assert result.exit_code == 0, result.output
    assert "6480 voxels" in result.output
    assert out.read_text().count("<Layer") == 45


def test_sample_with_sampler_and_steps(tiny_geometry, tmp_path) -> None:
    import torch

    from calosurrogate.models import build_surrogate

    torch.manual_seed(0)
    incident = torch.exp(torch.empty(200, 1).uniform_(7.0, 11.0))
    showers = torch.rand(200, tiny_geometry.n_voxels) * incident / 100
    small = {"diffusion": {"backbone": {"hidden": 8, "blocks": 1}}, "wgan": {"hidden": 8, "critic_hidden": 8}}
    for name, overrides in small.items():
        model = build_surrogate(name, tiny_geometry, overrides)
        model.fit_preprocessing(showers, incident)
        model.save(tmp_path / name / "model.pt")
    runner = CliRunner()
    args = ["sample", "--n", "20", "--energies", "fixed:10GeV", "--steps", "3", "--sampler", "euler"]
    result = runner.invoke(main, [*args, "--run", str(tmp_path / "diffusion"), "--out", str(tmp_path / "d.h5")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d.h5").exists()
    result = runner.invoke(main, [*args, "--run", str(tmp_path / "wgan"), "--out", str(tmp_path / "w.h5")])
    assert result.exit_code != 0 and "no sampling options" in result.output and not (tmp_path / "w.h5").exists()
    result = runner.invoke(
        main, [*args[:-1], "leapfrog", "--run", str(tmp_path / "diffusion"), "--out", str(tmp_path / "x.h5")]
    )
    assert result.exit_code != 0 and "sampler must be one of" in result.output
    # --sigma-max: the same seed from another start level gives other showers; a level at or below
    # sigma_min is refused
    result = runner.invoke(
        main, [*args, "--sigma-max", "5", "--run", str(tmp_path / "diffusion"), "--out", str(tmp_path / "s.h5")]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "d.h5") as d, h5py.File(tmp_path / "s.h5") as s:
        assert not np.allclose(d["showers"][:], s["showers"][:])
    result = runner.invoke(
        main, [*args, "--sigma-max", "0.001", "--run", str(tmp_path / "diffusion"), "--out", str(tmp_path / "z.h5")]
    )
    assert result.exit_code != 0 and "sigma_min < sigma_max" in result.output and not (tmp_path / "z.h5").exists()
    if not torch.cuda.is_available():
        result = runner.invoke(
            main, [*args, "--run", str(tmp_path / "diffusion"), "--out", str(tmp_path / "c.h5"), "--device", "cuda"]
        )
        assert result.exit_code != 0 and "no CUDA GPU" in result.output and not (tmp_path / "c.h5").exists()


def test_distill_command(tiny_geometry, tiny_file, tmp_path) -> None:
    import torch

    from calosurrogate.models import build_surrogate, load_surrogate

    torch.manual_seed(0)
    incident = torch.exp(torch.empty(200, 1).uniform_(7.0, 11.0))
    showers = torch.rand(200, tiny_geometry.n_voxels) * incident / 100
    teacher = build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": 8, "blocks": 1}})
    teacher.fit_preprocessing(showers, incident)
    teacher.save(tmp_path / "teacher" / "model.pt")
    runner = CliRunner()
    args = ["distill", "--run", str(tmp_path / "teacher"), "--data", str(tiny_file), "--steps", "2",
            "--set", "train.epochs=1", "--set", "train.batch_size=200"]  # fmt: skip
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "student")])
    assert result.exit_code == 0, result.output
    student = load_surrogate(tmp_path / "student" / "model.pt")
    assert student.config.distill_steps == 2 and student.config.sampling.steps == 2
    wgan = build_surrogate("wgan", tiny_geometry, {"hidden": 8, "critic_hidden": 8})
    wgan.fit_preprocessing(showers, incident)
    wgan.save(tmp_path / "wgan" / "model.pt")
    result = runner.invoke(main, ["distill", "--run", str(tmp_path / "wgan"), "--data", str(tiny_file), "--steps", "2",
                                  "--out", str(tmp_path / "s2")])  # fmt: skip
    assert result.exit_code != 0 and "cannot be distilled" in result.output


def test_calibrate_command_gives_an_older_model_its_posterior_variance(tiny_geometry, tiny_file, tmp_path) -> None:
    import torch

    from calosurrogate.models import build_surrogate, load_surrogate

    torch.manual_seed(0)
    incident = torch.exp(torch.empty(200, 1).uniform_(7.0, 11.0))
    model = build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": 8, "blocks": 1}})
    model.fit_preprocessing(torch.rand(200, tiny_geometry.n_voxels) * incident / 100, incident)
    model.save(tmp_path / "old" / "model.pt")
    before = (tmp_path / "old" / "model.pt").read_bytes()
    runner = CliRunner()
    args = ["calibrate", "--run", str(tmp_path / "old"), "--data", str(tiny_file), "--showers", "300"]
    result = runner.invoke(main, args)
    assert result.exit_code != 0 and "--force" in result.output
    assert (tmp_path / "old" / "model.pt").read_bytes() == before
    result = runner.invoke(main, [*args, "--force"])
    assert result.exit_code == 0, result.output
    calibrated = load_surrogate(tmp_path / "old" / "model.pt")
    assert bool(calibrated.posterior_variance.calibrated)
    assert all(torch.equal(p, q) for p, q in zip(calibrated.net.parameters(), model.net.parameters(), strict=True))
    out = tmp_path / "s.h5"
    result = runner.invoke(main, ["sample", "--run", str(tmp_path / "old"), "--out", str(out), "--n", "20",
                                  "--energies", "log-uniform:1GeV:10GeV", "--sampler", "analytic-ddpm", "--steps", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output


def test_shipped_configs_build_their_models(tiny_geometry) -> None:
    """Every file in configs/ names only settings that exist, with values the model and loop accept."""
    import dataclasses
    from pathlib import Path

    import yaml

    from calosurrogate.models import build_surrogate
    from calosurrogate.models.base import REGISTRY, merge_settings
    from calosurrogate.training.loop import TrainConfig

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        loaded = yaml.safe_load(path.read_text())
        assert set(loaded) <= {"model", "train"}, path
        # GEOMETRY-FAMILY[-VARIANT].yaml: ds2-diffusion.yaml -> diffusion, paraflow-paraflow-cpu.yaml -> paraflow
        family = next((part for part in path.stem.split("-")[1:] if part in REGISTRY), None)
        assert family is not None, f"{path.name} names no family after its geometry"
        model = build_surrogate(family, tiny_geometry, loaded["model"])
        assert merge_settings(dataclasses.asdict(model.config), loaded["model"]) == dataclasses.asdict(model.config)
        assert dataclasses.asdict(TrainConfig(**loaded["train"])).items() >= loaded["train"].items()


def test_start_up_is_fast_and_models_are_listed_one_line_each() -> None:
    """``calo --help`` and ``calo models`` need no torch: each answers within a second (best of three)."""
    import subprocess
    import sys
    import time

    from calosurrogate.models import REGISTRY
    from calosurrogate.models.catalog import FAMILIES, POINT_FAMILIES
    from calosurrogate.models.pretrained import available

    assert set(FAMILIES) == set(REGISTRY)
    for args in (["--help"], ["models"]):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "calosurrogate.cli", *args], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            assert result.returncode == 0, result.stderr
        assert min(times) < 1.0, (args, times)
    families, shipped = result.stdout.strip().split("\n\n")
    lines = families.splitlines()
    assert [line.split()[0] for line in lines] == sorted(FAMILIES) + sorted(POINT_FAMILIES)
    assert not any("see module docstring" in line for line in lines)
    assert [line.split()[0] for line in shipped.splitlines()[1:]] == available()
    leaked = subprocess.run([sys.executable, "-c", "import sys, calosurrogate.cli, calosurrogate.models.catalog; "
                             "import calosurrogate.models.pretrained as p; p.describe(p.available()[0]); "
                             "print('torch' in sys.modules)"], capture_output=True, text=True)  # fmt: skip
    assert leaked.stdout.strip() == "False", leaked.stderr


def test_sample_a_shipped_model(tmp_path) -> None:
    out = tmp_path / "shipped.h5"
    args = ["sample", "--run", "shipped:ds2-diffusion", "--energies", "fixed:10GeV", "--n", "20", "--steps", "4",
            "--no-compile"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_showers(out).showers.shape == (20, 6480)
    result = CliRunner().invoke(main, ["sample", "--run", "shipped:nope", "--n", "2", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "no shipped model named 'nope' (shipped: ds2-diffusion" in result.output


def test_nested_settings_from_the_command_line(tiny_geometry, tmp_path) -> None:
    """``--set model.PART.KEY=VALUE`` reaches a part's setting; a YAML section and --set merge."""
    from calosurrogate.cli import _parse_settings
    from calosurrogate.models import ConfigError, build_surrogate

    config = tmp_path / "c.yaml"
    config.write_text("model:\n  backbone:\n    hidden: 16\n  sampling:\n    steps: 4\n")
    model_cfg, _ = _parse_settings(config, ("model.backbone.blocks=1", "model.sampling.sampler=euler"))
    assert model_cfg == {"backbone": {"hidden": 16, "blocks": 1}, "sampling": {"steps": 4, "sampler": "euler"}}
    model = build_surrogate("diffusion", tiny_geometry, model_cfg)
    assert (model.config.backbone.hidden, model.config.backbone.blocks, model.config.backbone.name) == (16, 1, "mlp")
    assert (model.config.sampling.sampler, model.config.sampling.steps) == ("euler", 4)
    with pytest.raises(ConfigError, match=r"model 'diffusion' config.backbone: hidden = 'wide': expected an integer"):
        build_surrogate("diffusion", tiny_geometry, {"backbone": {"hidden": "wide"}})
    with pytest.raises(ConfigError, match=r"config.sampling: unknown key\(s\) \['stepz'\]"):
        build_surrogate("diffusion", tiny_geometry, {"sampling": {"stepz": 4}})
    with pytest.raises(ConfigError, match="code_scale is a setting, not a part"):
        _parse_settings(None, ("model.code_scale=hits", "model.code_scale.x=1"))
