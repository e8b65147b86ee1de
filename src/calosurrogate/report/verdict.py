"""The verdict an evaluation opens with: per metric, within its floor, close, or separable, and one
sentence on the whole, naming the observables that separate most.

Thresholds (stated in the report beside the verdict):

- A classifier AUC (0.5: the classifier cannot tell the samples apart) is *within its floor* up to
  :data:`AUC_WITHIN`, *close* up to :data:`AUC_CLOSE`, *separable* above.
- A metric with a floor (FPD, KPD, CFD, the separation power of an observable; the floor is the
  metric between the two halves of the reference) is *within its floor* when its value exceeds
  the floor by at most two standard errors, *close* when it is at most :data:`CLOSE_FACTOR` times
  the floor (plus two errors), *separable* beyond.
- PRDC's precision, recall and coverage (higher is better) are *within their floor* when they
  fall short of it by at most two standard errors, *close* when by at most :data:`PRDC_CLOSE`
  of the floor (plus two errors); density, which a generator can push above its floor by
  crowding the reference's dense regions, is judged by its distance from the floor either way.

Pure functions over the numbers of an evaluation (``metrics.json``'s content).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

AUC_WITHIN = 0.55
AUC_CLOSE = 0.65
CLOSE_FACTOR = 3.0
PRDC_CLOSE = 0.1
RANK = {"within its floor": 0, "close": 1, "separable": 2}
WORDS = {
    "within its floor": "Indistinguishable",
    "close": "Close",
    "separable": "Separable",
    "not judged": "Not judged",
}
NO_FLOOR = "no floor"  # computed without floors (--no-floors, or too few reference showers): not judged


@dataclass(frozen=True)
class Judgement:
    """One metric's standing: ``status`` is ``"within its floor"``, ``"close"`` or ``"separable"``."""

    metric: str
    value: float
    floor: float | None
    status: str


def judge_auc(metric: str, auc: float) -> Judgement:
    """A classifier AUC against the fixed thresholds."""
    status = "within its floor" if auc <= AUC_WITHIN else "close" if auc <= AUC_CLOSE else "separable"
    return Judgement(metric, auc, 0.5, status)


def judge_with_floor(metric: str, entry: dict[str, Any]) -> Judgement:
    """A metric with ``value``, ``error`` and ``floor`` (and ``floor_error``) against its floor;
    without a floor its status is :data:`NO_FLOOR`.

    ``entry["direction"]`` says which way is worse: ``"lower"`` (the default: a value above the
    floor is worse), ``"higher"`` (a value below it is) or ``"closer"`` (any distance from it).
    """
    value, floor = float(entry["value"]), entry.get("floor")
    if floor is None or not math.isfinite(float(floor)):
        return Judgement(metric, value, None, NO_FLOOR)
    floor = float(floor)
    noise = 2 * math.hypot(float(entry.get("error") or 0.0), float(entry.get("floor_error") or 0.0))
    direction = entry.get("direction", "lower")
    if direction == "lower":
        excess, allowed = value - floor, (CLOSE_FACTOR - 1) * floor
    else:
        excess = floor - value if direction == "higher" else abs(value - floor)
        allowed = PRDC_CLOSE * abs(floor)
    if excess <= noise:
        status = "within its floor"
    elif excess <= allowed + noise:
        status = "close"
    else:
        status = "separable"
    return Judgement(metric, value, floor, status)


def judgements(numbers: dict[str, Any]) -> tuple[list[Judgement], list[Judgement]]:
    """The headline metrics' judgements and every observable's, from ``metrics.json``'s numbers
    (keys ``classifiers``, ``scalars``, ``separation_power``)."""
    headline = [judge_auc(f"classifier AUC, {kind.removeprefix('cls-')}", entry["auc"])
                for kind, entry in sorted(numbers.get("classifiers", {}).items())]  # fmt: skip
    headline += [judge_with_floor(key, entry) for key, entry in numbers.get("scalars", {}).items()]
    observables = [judge_with_floor(key, entry) for key, entry in numbers.get("separation_power", {}).items()]
    return headline, observables


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _worst(observables: list[Judgement], n: int) -> list[Judgement]:
    """The observables that separate most: separable ones first, then by how far above the floor."""
    return sorted(observables, key=lambda j: (-RANK[j.status], -(j.value - (j.floor or 0.0))))[:n]


def verdict(numbers: dict[str, Any], n_worst: int = 3) -> dict[str, Any]:
    """The verdict: ``status`` (the worst of every metric), ``sentence``, each metric's standing and
    the worst observables.

    Args:
        numbers: ``metrics.json``'s content (``EvaluationResult.to_json_dict()``).
    """
    headline, observables = judgements(numbers)
    unjudged = [j.metric for j in headline + observables if j.status == NO_FLOOR]
    headline = [j for j in headline if j.status != NO_FLOOR]
    observables = [j for j in observables if j.status != NO_FLOOR]
    counts = {status: sum(j.status == status for j in observables) for status in RANK}
    worst = _worst(observables, n_worst)
    everything = headline + observables
    status = max((j.status for j in everything), key=RANK.__getitem__, default="not judged")
    apart = [j for j in headline if j.status == "separable"]
    named = ", ".join(
        f"{j.metric} ({_num(j.value)} against a floor of {_num(j.floor)})"
        for j in worst
        if j.floor is not None and j.status != "within its floor"
    )
    if status == "not judged":
        sentence = ("Not judged: no metric has a floor to stand against (computed without floors, or the reference "
                    "is too small to halve); read the numbers and plots instead.")  # fmt: skip
    elif status == "within its floor":
        sentence = "Indistinguishable: every metric is within its floor (the reference's halves against each other)."
    elif status == "close":
        sentence = ("Close: no metric separates the samples clearly, but some sit above their floors; nearest to "
                    f"separating: {named or ', '.join(j.metric for j in headline if j.status == 'close')}.")  # fmt: skip
    else:
        what = "".join(f"{j.metric} {_num(j.value)}; " for j in apart)
        sentence = (f"Separable: {what}{counts['separable']} of {len(observables)} observables separate beyond their "
                    f"floors" + (f", most of all {named}." if named else "."))  # fmt: skip
    if unjudged and status != "not judged":
        sentence += f" Not judged, for want of a floor: {len(unjudged)} metric(s) and observable(s)."
    return {
        "status": status,
        "word": WORDS[status],
        "sentence": sentence,
        "not_judged": unjudged,
        "metrics": [j.__dict__ for j in headline],
        "observables": counts,
        "worst": [j.__dict__ for j in worst],
        "thresholds": {
            "auc_within": AUC_WITHIN,
            "auc_close": AUC_CLOSE,
            "close_factor": CLOSE_FACTOR,
            "prdc_close": PRDC_CLOSE,
            "noise": "two standard errors of value and floor",
        },
    }
