from __future__ import annotations

import json

import numpy as np
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
