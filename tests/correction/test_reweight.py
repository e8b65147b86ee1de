"""Classifier weights reproduce a known density ratio; weights clip as stated; the command line
writes a weight file that calo evaluate takes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from calosurrogate.cli import main
from calosurrogate.correction import ReweightSettings, reweight_samples
from calosurrogate.correction.reweight import clip_weights
from calosurrogate.data.weights import read_weights

CLASSIFIERS = {"network": ReweightSettings(classifier="network", hidden=32, epochs=15, clip=50.0),
               "boosted": ReweightSettings(classifier="boosted", clip=50.0)}  # fmt: skip
# (correlation of log weights with the truth, median |log error|, |weighted mean - 0.5|): trees are
# piecewise constant, and leaves of at least 100 showers flatten the tails of a smooth ratio
TOLERANCE = {"network": (0.97, 0.15, 0.04), "boosted": (0.95, 0.15, 0.07)}


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_weights_reproduce_the_ratio_of_two_gaussians(rng, classifier) -> None:
    nominal = rng.normal(0.5, 1.0, size=(20_000, 2))
    modified = rng.normal(0.0, 1.0, size=(20_000, 2))
    # N(0.5, 1) / N(0, 1) in each of two coordinates
    truth = np.exp(0.5 * modified.sum(1) - 0.25)
    result = reweight_samples(nominal, modified, CLASSIFIERS[classifier])
    log_w, log_truth = np.log(result.weights), np.log(truth / truth.mean())
    correlation, median_error, mean_error = TOLERANCE[classifier]
    assert np.corrcoef(log_w, log_truth)[0, 1] > correlation
    assert np.median(np.abs(log_w - log_truth)) < median_error
    weighted_mean = result.weights @ modified / result.weights.sum()
    np.testing.assert_allclose(weighted_mean, [0.5, 0.5], atol=mean_error)
    # Kish's size of the true weights: n exp(-|mu|^2) = n e^-0.5
    assert result.effective_sample_size / len(modified) == pytest.approx(np.exp(-0.5), abs=0.05)
    assert all(0.55 < auc < 0.75 for auc in result.auc)
    assert set(np.unique(result.fold)) == {0, 1}


@pytest.mark.parametrize("classifier", CLASSIFIERS)
def test_identical_samples_get_flat_weights(rng, classifier) -> None:
    a, b = rng.normal(size=(6000, 3)), rng.normal(size=(6000, 3))
    result = reweight_samples(a, b, CLASSIFIERS[classifier])
    assert result.effective_sample_size / len(b) > 0.95
    assert all(abs(auc - 0.5) < 0.04 for auc in result.auc)


def test_clipping_bound_is_a_fixed_point() -> None:
    weights = np.r_[np.ones(999), 1e6]
    clipped, which = clip_weights(weights, 10.0)
    assert which.sum() == 1
    assert clipped.mean() == pytest.approx(1.0)
    assert clipped.max() == pytest.approx(10.0 * clipped.mean(), rel=1e-9)
    flat, none = clip_weights(np.ones(10), 5.0)
    np.testing.assert_allclose(flat, 1.0)
    assert not none.any()


def test_classifier_choice() -> None:
    assert ReweightSettings().boosted and ReweightSettings(inputs="high", classifier="auto").boosted
    assert not ReweightSettings(inputs="low").boosted and ReweightSettings(inputs="low", classifier="boosted").boosted
    assert not ReweightSettings(classifier="network").boosted
    with pytest.raises(ValueError, match="do not read images"):
        ReweightSettings(inputs="cnn", classifier="boosted")
    with pytest.raises(ValueError, match="classifier must be one of"):
        ReweightSettings(classifier="forest")


def test_too_few_showers_are_refused(rng) -> None:
    with pytest.raises(ValueError, match="too few showers to reweight"):
        reweight_samples(rng.normal(size=(30, 2)), rng.normal(size=(30, 2)))


def test_reweight_then_evaluate_weighted(tmp_path) -> None:
    runner = CliRunner()
    for name, extra in (("nominal", []), ("cheap", ["--cheap"])):
        result = runner.invoke(main, ["simulate", "--geometry", "ds2", "--n", "600", "--seed", "3", "--quiet",
                                      "--energy", "log-uniform:1GeV:100GeV", "--out", str(tmp_path / f"{name}.h5"),
                                      *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "cheap.h5") as f, h5py.File(tmp_path / "nominal.h5") as g:
        np.testing.assert_array_equal(f["incident_energies"][:], g["incident_energies"][:])  # paired
        np.testing.assert_array_equal(f["pairing_index"][:], np.arange(600))
        assert f.attrs["spot_energy_mev"] > g.attrs["spot_energy_mev"]
    weights_path = tmp_path / "w.h5"
    args = ["reweight", "--nominal", str(tmp_path / "nominal.h5"), "--modified", str(tmp_path / "cheap.h5"),
            "--out", str(weights_path), "--epochs", "3"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "effective sample size" in result.output
    weights = read_weights(weights_path)
    assert len(weights) == 600 and weights.mean() == pytest.approx(1.0)
    with h5py.File(weights_path) as f:
        assert json.loads(f.attrs["settings"])["epochs"] == 3
        assert f.attrs["modified_sha256"]
    assert runner.invoke(main, args).exit_code != 0  # kept without --force
    # the weighted evaluation (the API behind calo evaluate --weights; its plots cost a minute on ds2)
    from calosurrogate.evaluation import EvaluationSettings, evaluate_files
    from calosurrogate.geometry import get_geometry
    from calosurrogate.metrics import ClassifierSettings
    from calosurrogate.report.writer import _weighted_note

    settings = EvaluationSettings.fast(metrics=("histograms", "cls-high"), progress=False,
                                       classifier=ClassifierSettings.cpu(epochs=2))  # fmt: skip
    result = evaluate_files(tmp_path / "nominal.h5", tmp_path / "cheap.h5", get_geometry("ds2"), settings,
                            generated_weights=weights)  # fmt: skip
    assert 1 < result.n_showers["generated_effective"] <= 600
    assert "effective sample size" in _weighted_note(result)
    assert result.classifiers["cls-high"]["settings"]["generated_weights"] is True
    # a weight file of another length is refused with one line naming it
    short = tmp_path / "short.h5"
    with h5py.File(short, "w") as f:
        f["weights"] = np.ones(10)
    result = runner.invoke(main, ["evaluate", "--reference", str(tmp_path / "nominal.h5"), "--generated",
                                  str(tmp_path / "cheap.h5"), "--geometry", "ds2", "--out", str(tmp_path / "e2"),
                                  "--fast", "--metrics", "histograms", "--weights", str(short)])  # fmt: skip
    assert result.exit_code != 0
    assert "10 weights for cheap.h5" in result.output


def test_weights_keep_the_energy_spectrum(rng) -> None:
    from calosurrogate.correction.reweight import normalise_per_energy

    energies = np.exp(rng.uniform(np.log(1e3), np.log(1e6), 5000))
    tilted = np.exp(-np.log(energies)) * rng.lognormal(0.0, 0.3, 5000)  # weights that favour low energies
    flat = normalise_per_energy(tilted, energies, n_bins=10)
    low, high = energies < 3e4, energies >= 3e4
    assert tilted[low].mean() > 10 * tilted[high].mean()
    assert flat[low].mean() == pytest.approx(flat[high].mean(), rel=0.1)
    # within a bin the order of the weights is kept
    same_bin = (energies > 1.2e3) & (energies < 1.8e3)  # inside the first of ten equal-count bins in ln E
    assert np.array_equal(np.argsort(flat[same_bin]), np.argsort(tilted[same_bin]))
