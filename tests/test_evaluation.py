"""The evaluation on simulator files: same settings look alike, a 5% energy scale is flagged."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from calosurrogate.data import ShowerFileError, read_showers, write_showers
from calosurrogate.evaluation import EvaluationSettings, evaluate_files
from calosurrogate.geometry import get_geometry
from calosurrogate.metrics import ClassifierSettings
from calosurrogate.report import write_evaluation
from calosurrogate.simulate import get_detector, simulate_to_file

GEOMETRY = get_geometry("ds1-photons")
N = 8000


def _settings(**overrides) -> EvaluationSettings:
    base = EvaluationSettings.fast(
        classifier=ClassifierSettings(hidden=64, epochs=6, batch_size=500, runs=1),
        progress=False,
        chunk_size=3000,
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    detector = get_detector("ds1-photons")
    reference = simulate_to_file(detector, N, folder / "reference.h5", seed=1, progress=False)
    same = simulate_to_file(detector, N, folder / "same.h5", seed=2, progress=False)
    batch = read_showers(same)
    distorted = write_showers(folder / "scaled.h5", batch.incident_energies, batch.showers * 1.05)
    return {"reference": reference, "same": same, "scaled": distorted}


@pytest.fixture(scope="module")
def same_result(sim_files):
    return evaluate_files(sim_files["reference"], sim_files["same"], GEOMETRY, _settings())


def test_same_settings_look_alike(same_result) -> None:
    assert abs(same_result.classifiers["cls-high"]["auc"] - 0.5) < 0.05
    etot = same_result.separation["E_tot/E_inc"]
    assert etot["value"] < 0.02
    # The generated sample is as close to the reference as the reference's halves are to each other.
    assert same_result.scalars["FPD x 1e3"]["value"] < 2 * same_result.scalars["FPD x 1e3"]["floor"] + 0.5
    for variant in ("CFD voxel", "CFD layer"):
        assert same_result.scalars[variant]["value"] < 2 * same_result.scalars[variant]["floor"] + 0.05
    # No generated excess outside the histograms; what both samples leave outside them is said, with both shares.
    assert not [w for w in same_result.warnings if "more generated than reference" in w]
    assert all("of the reference" in w and "of the generated" in w for w in same_result.warnings)


def test_energy_scale_is_flagged(sim_files, same_result) -> None:
    scaled = evaluate_files(sim_files["reference"], sim_files["scaled"], GEOMETRY, _settings(metrics=("histograms",)))
    etot = scaled.separation["E_tot/E_inc"]
    assert etot["value"] > 5 * same_result.separation["E_tot/E_inc"]["value"]
    assert etot["value"] > etot["floor"] + 10 * etot["error"]
    # ds1 also histograms E_tot/E_inc per discrete energy: high energies, narrow bins, show it most.
    assert scaled.separation["E_tot/E_inc@65536MeV"]["value"] > 0.3
    from calosurrogate.report.verdict import verdict

    judged = verdict(scaled.to_json_dict())
    assert judged["status"] == "separable" and "most of all E_tot/E_inc" in judged["sentence"]


def test_low_level_classifiers_run(sim_files) -> None:
    result = evaluate_files(
        sim_files["reference"],
        sim_files["same"],
        GEOMETRY,
        _settings(metrics=("cls-low", "cls-low-normed"), max_showers=3000),
    )
    for kind in ("cls-low", "cls-low-normed"):
        assert 0.4 < result.classifiers[kind]["auc"] < 0.62
        assert result.classifiers[kind]["settings"]["showers_per_class"] == 3000


def test_low_level_inputs_held_in_bf16_above_the_limit(sim_files, monkeypatch) -> None:
    """ds3's inputs (8.1 GB per sample in float32) are held in bf16: the same judgement, half the memory."""
    import calosurrogate.evaluation as evaluation

    monkeypatch.setattr(evaluation, "LOW_LEVEL_FLOAT32_LIMIT_GB", 1e-3)  # 3000 x 369 float32 is 4.4 MB
    files = (sim_files["reference"], sim_files["scaled"])
    judged = {
        how: evaluate_files(*files, GEOMETRY, _settings(metrics=("cls-low",), max_showers=3000, classifier_inputs=how))
        for how in ("auto", "float32")
    }
    settings = {how: result.classifiers["cls-low"]["settings"] for how, result in judged.items()}
    assert settings["auto"]["input_dtype"] == "bfloat16" and settings["float32"]["input_dtype"] == "float32"
    aucs = [result.classifiers["cls-low"]["auc"] for result in judged.values()]
    assert abs(aucs[0] - aucs[1]) < 0.03  # the same judgement from bf16 inputs
    from calosurrogate.report.writer import _input_precision  # the report says so

    assert "cls-low were held in bf16" in _input_precision(judged["auto"]) and not _input_precision(judged["float32"])
    with pytest.raises(ValueError, match="classifier_inputs"):
        EvaluationSettings(classifier_inputs="float16")


def test_image_classifier_on_a_regular_geometry_only(sim_files, tiny_file, tiny_geometry, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"cls-cnn .* ds1-photons"):
        evaluate_files(sim_files["reference"], sim_files["same"], GEOMETRY, _settings(metrics=("cls-cnn",)))
    batch = read_showers(tiny_file)
    doubled = write_showers(tmp_path / "doubled.h5", batch.incident_energies, batch.showers * 2.0)
    settings = _settings(metrics=("cls-cnn",))
    settings.classifier = ClassifierSettings(epochs=4, batch_size=200, cnn_channels=4)
    result = evaluate_files(tiny_file, doubled, tiny_geometry, settings)
    entry = result.classifiers["cls-cnn"]
    assert entry["inputs"] == "cnn" and entry["settings"]["network"] == "cnn"
    assert entry["auc"] > 0.75  # twice the energy per incident energy (identical files give ~0.5)


def test_count_mismatch_subsample_or_refuse(sim_files, tmp_path) -> None:
    batch = read_showers(sim_files["same"], max_showers=5000)
    fewer = write_showers(tmp_path / "fewer.h5", batch.incident_energies, batch.showers)
    with pytest.warns(UserWarning, match="using the first 5000"):
        result = evaluate_files(sim_files["reference"], fewer, GEOMETRY, _settings(metrics=("histograms",)))
    assert result.n_showers == {"reference": 5000, "generated": 5000}
    assert any("5000" in w for w in result.warnings)
    with pytest.raises(ValueError, match="refused"):
        evaluate_files(
            sim_files["reference"], fewer, GEOMETRY, _settings(metrics=("histograms",), on_count_mismatch="error")
        )


def test_different_geometries_refused(sim_files, tmp_path) -> None:
    other = simulate_to_file(get_detector("ds2"), 50, tmp_path / "ds2.h5", progress=False)
    with pytest.raises(ShowerFileError, match="368"):
        evaluate_files(sim_files["reference"], other, GEOMETRY, _settings())


def test_too_few_for_classifier(sim_files) -> None:
    with pytest.raises(ValueError, match="too few showers"):
        evaluate_files(
            sim_files["reference"], sim_files["same"], GEOMETRY, _settings(metrics=("cls-high",), max_showers=80)
        )


def test_out_of_range_entries_warned_and_no_nan(sim_files, tmp_path) -> None:
    batch = read_showers(sim_files["same"])
    showers = batch.showers.copy()
    showers[:1000] *= 3.0  # E_tot/E_inc near 3: outside [0.5, 1.5]
    wild = write_showers(tmp_path / "wild.h5", batch.incident_energies, showers)
    result = evaluate_files(sim_files["reference"], wild, GEOMETRY, _settings(metrics=("histograms",)))
    assert result.separation["E_tot/E_inc"]["generated_outside"] >= 900
    assert any("E_tot/E_inc" in w for w in result.warnings)
    assert all(np.isfinite(v["value"]) for v in result.separation.values())


def test_written_outputs(sim_files, same_result, tmp_path) -> None:
    files = write_evaluation(same_result, GEOMETRY, tmp_path / "eval")
    metrics = json.loads(files["metrics.json"].read_text())
    assert metrics["provenance"]["reference"]["sha256"] == same_result.provenance["reference"]["sha256"]
    assert len(metrics["provenance"]["reference"]["sha256"]) == 64
    assert metrics["settings"]["classifier"]["hidden"] == 64
    assert "E_tot/E_inc" in metrics["separation_power"]
    summary = files["summary.md"].read_text()
    assert "classifier AUC, high-level" in summary
    # the verdict comes first: two simulator files of the same settings are within every floor
    assert metrics["verdict"]["status"] == "within its floor"
    assert summary.splitlines()[2] == f"**Verdict: {metrics['verdict']['sentence']}**"
    assert files["report.html"].stat().st_size > 10_000
    with pytest.raises(FileExistsError, match="force"):
        write_evaluation(same_result, GEOMETRY, tmp_path / "eval")
    with h5py.File(sim_files["reference"]) as f:
        assert f["showers"].shape == (N, 368)


def _copy(src, dst):
    batch = read_showers(src, max_showers=4000)
    return write_showers(dst, batch.incident_energies, batch.showers)


def test_floors_are_cached_beside_the_reference_by_content(sim_files, tmp_path) -> None:
    reference = _copy(sim_files["reference"], tmp_path / "reference.h5")
    generated = _copy(sim_files["same"], tmp_path / "generated.h5")
    settings = _settings(metrics=("fpd", "kpd", "prdc"), kpd_num_batches=3)
    first = evaluate_files(reference, generated, GEOMETRY, settings)
    assert "floors_from_cache" not in first.provenance
    cache = tmp_path / ".reference.h5.calo-floors.json"
    assert len(json.loads(cache.read_text())["entries"]) == 3  # fpd, kpd, prdc
    second = evaluate_files(reference, generated, GEOMETRY, settings)
    assert second.provenance["floors_from_cache"]["metrics"] == ["fpd", "kpd", "prdc"]
    for key, entry in first.scalars.items():
        assert second.scalars[key]["floor"] == entry["floor"] and second.scalars[key]["value"] == entry["value"]
    # other settings are another entry, not a stale hit
    other = evaluate_files(reference, generated, GEOMETRY, _settings(metrics=("kpd",), kpd_num_batches=4))
    assert "floors_from_cache" not in other.provenance
    # the reference rewritten in place under the same name: its floors are computed anew
    batch = read_showers(reference)
    write_showers(reference, batch.incident_energies, batch.showers * 1.3, force=True)
    third = evaluate_files(reference, generated, GEOMETRY, settings)
    assert "floors_from_cache" not in third.provenance
    assert third.scalars["FPD x 1e3"]["floor"] != first.scalars["FPD x 1e3"]["floor"]
    assert len(json.loads(cache.read_text())["entries"]) == 7


def test_a_damaged_or_unwritable_cache_costs_nothing_but_time(sim_files, tmp_path) -> None:
    reference = _copy(sim_files["reference"], tmp_path / "reference.h5")
    generated = _copy(sim_files["same"], tmp_path / "generated.h5")
    cache = tmp_path / ".reference.h5.calo-floors.json"
    cache.write_text("{not json")
    settings = _settings(metrics=("fpd",))
    result = evaluate_files(reference, generated, GEOMETRY, settings)
    assert "floor" in result.scalars["FPD x 1e3"] and json.loads(cache.read_text())["format"] == 1
    cache.unlink()
    cache.mkdir()  # a name that cannot be written as a file: the write fails, the evaluation does not
    with pytest.warns(UserWarning, match="floor cache not written"):
        result = evaluate_files(reference, generated, GEOMETRY, settings)
    assert "floor" in result.scalars["FPD x 1e3"]


def test_without_floors_nothing_is_judged_against_a_floor(sim_files) -> None:
    result = evaluate_files(
        sim_files["reference"], sim_files["same"], GEOMETRY, _settings(metrics=("histograms", "kpd"), floors=False)
    )
    assert all("floor" not in e for e in [*result.scalars.values(), *result.separation.values()])
    from calosurrogate.report.verdict import verdict

    assert verdict(result.to_json_dict())["status"] == "not judged"
