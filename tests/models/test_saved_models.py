"""Models saved before a change load after it and sample the same showers.

The files in ``saved/`` were written by ``saved/make.py`` at the commit its docstring names, with the
showers each sampled then; a change to a family's code that changes what a saved model samples fails here.
Bit for bit on the kind of CPU that wrote them; another kind (an AMD core against an Intel one with AMX)
rounds float32 differently, by up to about 1e-4 of a value: the same hits, and values within 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calosurrogate.models import load_surrogate

SAVED = Path(__file__).resolve().parent / "saved"
CONDITIONS = np.array([[3e3], [2e4], [1.5e5]])
NAMES = sorted(p.stem for p in SAVED.glob("*.pt"))


def _same(now: np.ndarray, then: np.ndarray) -> None:
    """The same zeros and signs, and values equal up to the rounding of another CPU."""
    np.testing.assert_array_equal(np.sign(now), np.sign(then))
    np.testing.assert_allclose(now, then, rtol=1e-3, atol=1e-6 * float(np.abs(then).max()))


def test_there_are_saved_models() -> None:
    assert len(NAMES) >= 7


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_model_samples_what_it_sampled_then(name: str) -> None:
    model = load_surrogate(SAVED / f"{name}.pt")
    then = np.load(SAVED / f"{name}_showers.npy")
    assert (then > 0).any()
    _same(model.sample(CONDITIONS, seed=3), then)


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_model_has_the_training_loss_it_had_then(name: str) -> None:
    """The objective too is unchanged: the same per-shower loss on the same showers and random draws."""
    import sys

    sys.path.insert(0, str(SAVED))
    from make import training_loss

    _same(training_loss(load_surrogate(SAVED / f"{name}.pt")), np.load(SAVED / f"{name}_loss.npy"))


@pytest.mark.parametrize("option", [("voxel_skip", True), ("whitening", "layer"), ("pointwise_hidden", 4)])
def test_a_format_1_model_with_a_removed_option_is_refused_by_name(tmp_path, option) -> None:
    import torch

    from calosurrogate.models import CheckpointError

    checkpoint = torch.load(SAVED / "edm_heun.pt", weights_only=True)
    assert checkpoint["format_version"] == 1 and checkpoint["config"]["voxel_skip"] is False
    checkpoint["config"][option[0]] = option[1]
    torch.save(checkpoint, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=f"old.pt: a format-1 diffusion model with {option[0]} on"):
        load_surrogate(tmp_path / "old.pt")


def test_unknown_format_versions_are_named(tmp_path) -> None:
    import torch

    from calosurrogate.models import CheckpointError

    checkpoint = torch.load(SAVED / "edm_heun.pt", weights_only=True)
    checkpoint["format_version"] = 7
    torch.save(checkpoint, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format version 7, expected 1 to 2"):
        load_surrogate(tmp_path / "new.pt")
