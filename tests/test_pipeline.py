"""The main job end to end, at toy size: every step runs, writes its output, and is reused on a rerun."""

from __future__ import annotations

import json
import shutil

import torch
from click.testing import CliRunner

from calosurrogate.cli import main
from calosurrogate.evaluation import EvaluationSettings
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.models import load_surrogate, pretrained
from calosurrogate.models.pretrained import compact_checkpoint
from calosurrogate.pipeline import run_quickstart
from calosurrogate.training import TrainConfig


def test_quickstart_end_to_end_and_reuse(tmp_path, monkeypatch) -> None:
    settings = EvaluationSettings.fast(
        classifier=ClassifierSettings(hidden=32, epochs=2, batch_size=200),
        fpd_min_samples=500, fpd_max_samples=1000, fpd_num_batches=2, kpd_batch_size=500, kpd_num_batches=3,
    )  # fmt: skip
    kwargs = {
        "geometry_name": "ds1-photons", "n_train": 1500, "n_reference": 1200, "progress": False,
        "train_config": TrainConfig(epochs=2, batch_size=200, device="cpu"), "evaluation": settings,
        "model_overrides": {"shape_hidden": 32, "energy_hidden": 32, "shape_transforms": 2, "energy_transforms": 2},
    }  # fmt: skip
    messages: list[str] = []
    paths = run_quickstart(tmp_path / "qs", echo=messages.append, **kwargs)
    for key in ("train", "reference", "model", "generated", "report"):
        assert paths[key].exists(), key
    metrics = json.loads((paths["evaluation"] / "metrics.json").read_text())
    assert 0.0 <= metrics["classifiers"]["cls-high"]["auc"] <= 1.0
    assert metrics["provenance"]["pipeline"]["per_shower_ms"] > 0
    assert "compared" not in metrics["provenance"]  # the package ships no ds1-photons model
    before = paths["generated"].stat().st_mtime_ns
    again: list[str] = []
    run_quickstart(tmp_path / "qs", echo=again.append, **kwargs)
    assert paths["generated"].stat().st_mtime_ns == before
    assert sum("reusing" in m for m in again) == 5

    # A shipped model of the geometry (here the model just trained, stored as one is shipped) is
    # judged beside the one the job trains, and the report compares them.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    torch.save(compact_checkpoint(load_surrogate(paths["model"])), shipped / "ds1-test.pt")
    about = {"geometry": "ds1-photons", "summary": "a flow trained for the test", "training": {"minutes": 60, "machine": "a CPU"},
             "data": {"train_showers": 1500, "engine": "fast engine"}}  # fmt: skip
    (shipped / "ds1-test.json").write_text(json.dumps(about))
    monkeypatch.setattr(pretrained, "FOLDER", shipped)
    shutil.rmtree(paths["evaluation"])
    messages = []
    paths = run_quickstart(tmp_path / "qs", echo=messages.append, shipped_showers=400, **kwargs)
    assert sum("reusing" in m for m in messages) == 4
    shipped_metrics = json.loads((paths["shipped_evaluation"] / "metrics.json").read_text())
    assert shipped_metrics["n_showers"]["generated"] == 400
    compared = json.loads((paths["evaluation"] / "metrics.json").read_text())["provenance"]["compared"]
    assert [c["label"] for c in compared] == ["flow (trained here)", "ds1-test (shipped)"]
    assert compared[1]["auc_high"] == shipped_metrics["classifiers"]["cls-high"]["auc"]
    report = paths["report"].read_text()
    assert "flow (trained here)" in report and "ds1-test (shipped)" in report and "60 minutes of training" in report
    assert "ds1-test (shipped)" in "\n".join(messages)  # the summary printed at the end names it too
    messages = []
    run_quickstart(tmp_path / "qs", echo=messages.append, shipped_showers=400, **kwargs)
    assert sum("reusing" in m for m in messages) == 7


def test_train_and_sample_commands(tmp_path, tiny_file) -> None:
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["train", "--model", "inn", "--data", str(tiny_file), "--out", str(run), "--geometry", "ds2"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "36 voxels" in result.output  # the tiny file is not ds2
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  hidden: 16\n  transforms: 2\ntrain:\n  epochs: 1\n  batch_size: 200\n")
    result = runner.invoke(main, ["train", "--model", "inn", "--data", str(tiny_file), "--out", str(run), "--config", str(cfg),
                                  "--set", "train.learning_rate=0.002", "--geometry", str(_tiny_xml(tmp_path))])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run / "train_config.json").read_text())["train"]["learning_rate"] == 0.002
    result = runner.invoke(main, ["train", "--model", "inn", "--data", str(tiny_file), "--out", str(run), "--set", "train.epoch=3",
                                  "--geometry", str(_tiny_xml(tmp_path))])  # fmt: skip
    assert result.exit_code == 1 and "unknown key(s) ['epoch']" in result.output
    out = tmp_path / "gen.h5"
    result = runner.invoke(
        main, ["sample", "--run", str(run), "--energies", str(tiny_file), "--n", "300", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ms per shower" in result.output
    result = runner.invoke(main, ["models"])
    assert "flow" in result.output and "inn" in result.output


def _tiny_xml(tmp_path):
    from calosurrogate.geometry import CylindricalGeometry, CylindricalLayer

    edges = (0.0, 5.0, 12.0, 40.0)
    geometry = CylindricalGeometry("tiny", "electron", tuple(CylindricalLayer(i, edges, 4) for i in range(3)))
    path = tmp_path / "tiny.xml"
    if not path.exists():
        geometry.to_xml(path)
    return path
