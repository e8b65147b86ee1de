"""PRDC on known answers (a hand-computed case, identical and disjoint samples) and against the
reference implementation (the ``prdc`` package) on the same arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from calosurrogate.metrics.prdc import prdc, precision_recall_density_coverage


def test_by_hand_in_one_dimension() -> None:
    # k=1. Reference 0, 1, 3: balls of radius 1, 1, 2. Generated 0.4, 10: balls of radius 9.6.
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[0.4], [10.0]])
    got = precision_recall_density_coverage(real, fake, nearest_k=1)
    # 0.4 lies in the balls of 0 and 1, 10 in none: precision 1/2, density (2 + 0) / 2;
    # every reference shower lies in the ball of 0.4: recall 1; 0 and 1 hold 0.4, 3 holds nothing: coverage 2/3.
    assert got == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 2 / 3}, abs=1e-15)


def test_identical_samples_score_one_and_disjoint_samples_zero(rng) -> None:
    x = rng.normal(size=(600, 8))
    same = precision_recall_density_coverage(x, x.copy())
    # each generated shower sits on a reference one, inside its own ball and k - 1 others
    assert same == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}, abs=1e-12)
    apart = precision_recall_density_coverage(x, x + 100.0)
    assert apart == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_a_narrow_generator_is_precise_but_recalls_little(rng) -> None:
    real = rng.normal(size=(2000, 4))
    narrow = 0.3 * rng.normal(size=(2000, 4))
    got = precision_recall_density_coverage(real, narrow)
    assert got["precision"] > 0.95 and got["recall"] < 0.5 and got["coverage"] < 0.5


@pytest.mark.parametrize(("n", "d", "shift"), [(1500, 30, 0.0), (1500, 362, 0.2), (800, 3, 1.0)])
def test_matches_the_reference_implementation(rng, n, d, shift) -> None:
    official = pytest.importorskip("prdc")
    real, fake = rng.normal(size=(n, d)), rng.normal(size=(n + 137, d)) + shift
    ours = precision_recall_density_coverage(real, fake, nearest_k=5, chunk_rows=256)  # several blocks
    theirs = official.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    for name, value in ours.items():
        assert abs(value - float(theirs[name])) < 1e-6, name


@given(
    arrays(np.float64, st.tuples(st.integers(7, 40), st.just(3)), elements=st.floats(-5, 5)),
    arrays(np.float64, st.tuples(st.integers(7, 40), st.just(3)), elements=st.floats(-5, 5)),
)
def test_bounds(real: np.ndarray, fake: np.ndarray) -> None:
    got = precision_recall_density_coverage(real, fake, nearest_k=3)
    assert all(0.0 <= got[k] <= 1.0 for k in ("precision", "recall", "coverage"))
    assert 0.0 <= got["density"] <= len(real) / 3


def test_draws_give_a_spread_and_need_enough_showers(rng) -> None:
    real, fake = rng.normal(size=(3000, 5)), rng.normal(size=(3000, 5))
    values = prdc(real, fake, sample_size=1000, num_draws=4)
    assert set(values) == {"precision", "recall", "density", "coverage"}
    assert all(0 < v.error < 0.05 for v in values.values())
    assert values["density"].settings["sample_size"] == 1000
    with pytest.raises(ValueError, match="more than 5 showers"):
        precision_recall_density_coverage(real[:5], fake)
