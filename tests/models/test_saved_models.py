"""Models saved before a change load after it and sample the same showers, bit for bit.

The files in ``saved/`` were written by ``saved/make.py`` at the commit its docstring names, with the
showers each sampled then; a change to a family's code that changes what a saved model samples fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calosurrogate.models import load_surrogate

SAVED = Path(__file__).resolve().parent / "saved"
CONDITIONS = np.array([[3e3], [2e4], [1.5e5]])
NAMES = sorted(p.stem for p in SAVED.glob("*.pt"))


def test_there_are_saved_models() -> None:
    assert len(NAMES) >= 7


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_model_samples_what_it_sampled_then(name: str) -> None:
    model = load_surrogate(SAVED / f"{name}.pt")
    then = np.load(SAVED / f"{name}_showers.npy")
    assert (then > 0).any()
    np.testing.assert_array_equal(model.sample(CONDITIONS, seed=3), then)
