"""The verdict on known answers: identical samples are within every floor, a slight shift is close,
disjoint samples are separable, and the sentence names what separates most."""

from __future__ import annotations

import pytest

from calosurrogate.report.verdict import AUC_CLOSE, AUC_WITHIN, judge_auc, judge_with_floor, verdict


def _numbers(auc: float, fpd: float, separation: dict[str, float]) -> dict:
    return {
        "classifiers": {"cls-high": {"auc": auc}},
        "scalars": {"FPD x 1e3": {"value": fpd, "error": 0.5, "floor": 10.0, "floor_error": 0.5}},
        "separation_power": {k: {"value": v, "error": 0.001, "floor": 0.01} for k, v in separation.items()},
    }


def test_identical_samples_are_within_every_floor() -> None:
    judged = verdict(_numbers(0.51, 10.4, {"E_layer/0": 0.011, "width_r/3": 0.009}))
    assert judged["status"] == "within its floor" and judged["word"] == "Indistinguishable"
    assert judged["sentence"].startswith("Indistinguishable: every metric is within its floor")
    assert judged["observables"] == {"within its floor": 2, "close": 0, "separable": 0}


def test_a_slight_shift_is_close_and_names_the_nearest_observables() -> None:
    judged = verdict(_numbers(0.60, 21.0, {"E_layer/0": 0.011, "width_r/3": 0.025, "EC_r/2": 0.02}))
    assert judged["status"] == "close"
    assert judged["sentence"].startswith("Close:") and "width_r/3 (0.025 against a floor of 0.01)" in judged["sentence"]
    assert judged["sentence"].index("width_r/3") < judged["sentence"].index("EC_r/2")  # the larger excess first


def test_disjoint_samples_are_separable() -> None:
    judged = verdict(_numbers(0.999, 5000.0, {"E_layer/0": 0.9, "width_r/3": 0.5, "EC_r/2": 0.011}))
    assert judged["status"] == "separable" and judged["word"] == "Separable"
    assert "classifier AUC, high 0.999" in judged["sentence"] and "FPD x 1e3 5,000" in judged["sentence"]
    assert "2 of 3 observables separate" in judged["sentence"]
    assert [w["metric"] for w in judged["worst"][:2]] == ["E_layer/0", "width_r/3"]
    assert "EC_r/2" not in judged["sentence"]  # within its floor: not named among what separates


@pytest.mark.parametrize(
    ("auc", "status"), [(0.5, "within its floor"), (AUC_WITHIN, "within its floor"), (0.6, "close"),
                        (AUC_CLOSE, "close"), (0.66, "separable")],
)  # fmt: skip
def test_auc_thresholds(auc: float, status: str) -> None:
    assert judge_auc("cls", auc).status == status


def test_floor_thresholds_count_the_errors() -> None:
    entry = {"value": 0.012, "error": 0.001, "floor": 0.01, "floor_error": 0.0005}
    assert judge_with_floor("s", entry).status == "within its floor"  # 0.002 above: within two errors
    assert judge_with_floor("s", {**entry, "value": 0.02}).status == "close"
    assert judge_with_floor("s", {**entry, "value": 0.04}).status == "separable"
    assert judge_with_floor("s", {"value": 3.0, "error": 0.1}).status == "no floor"  # no floor: no judgement


def test_prdc_directions() -> None:
    """Precision, recall and coverage fall short of their floors; density misses it either way."""
    entry = {"value": 0.80, "error": 0.005, "floor": 0.82, "floor_error": 0.005, "direction": "higher"}
    assert judge_with_floor("precision", {**entry, "value": 0.815}).status == "within its floor"
    assert judge_with_floor("precision", {**entry, "value": 0.95}).status == "within its floor"  # above: no harm
    assert judge_with_floor("precision", {**entry, "value": 0.78}).status == "close"  # 5% short
    assert judge_with_floor("precision", {**entry, "value": 0.5}).status == "separable"
    density = {**entry, "floor": 1.0, "direction": "closer"}
    assert judge_with_floor("density", {**density, "value": 1.005}).status == "within its floor"
    assert judge_with_floor("density", {**density, "value": 1.08}).status == "close"
    assert judge_with_floor("density", {**density, "value": 1.6}).status == "separable"  # crowding
    assert judge_with_floor("density", {**density, "value": 0.4}).status == "separable"


def test_without_floors_the_verdict_says_not_judged() -> None:
    numbers = {"scalars": {"FPD x 1e3": {"value": 5000.0, "error": 1.0}},
               "separation_power": {"E_layer/0": {"value": 0.9, "error": 0.01}}}  # fmt: skip
    judged = verdict(numbers)
    assert judged["status"] == "not judged" and judged["sentence"].startswith("Not judged")
    assert judged["not_judged"] == ["FPD x 1e3", "E_layer/0"]
    # a classifier needs no floor: it is judged, and the rest is said to be unjudged
    judged = verdict({**numbers, "classifiers": {"cls-high": {"auc": 0.99}}})
    assert judged["status"] == "separable" and "Not judged, for want of a floor: 2" in judged["sentence"]
