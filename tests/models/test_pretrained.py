"""The models shipped inside the package: they load, sample sane showers, and their files are honest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calosurrogate.models import CheckpointError, build_surrogate
from calosurrogate.models.base import surrogate_from_checkpoint
from calosurrogate.models.pretrained import FOLDER, MAX_BYTES, available, compact_checkpoint, describe, load_pretrained
from calosurrogate.simulate import get_detector
from calosurrogate.simulate.simulator import ShowerSimulator


def test_the_ds2_diffusion_model_is_shipped_with_its_provenance() -> None:
    assert "ds2-diffusion" in available()
    about = describe("ds2-diffusion")
    assert about["geometry"] == "ds2" and about["family"] == "diffusion"
    assert about["commands"] and about["training"]["minutes"] > 0 and about["data"]["train_showers"] > 0
    shipped = about["quality"]["bfloat16 weights (as shipped)"]
    assert 0.5 <= shipped["auc_high"] < 1.0
    assert (FOLDER / "ds2-diffusion.pt").stat().st_size <= MAX_BYTES


@pytest.mark.parametrize("name", available())
def test_a_shipped_model_samples_showers_that_follow_the_incident_energy(name) -> None:
    about = describe(name)
    model = load_pretrained(name)
    assert model.config.sampling.steps == about["sampling"]["steps"]
    assert model.config.sampling.compile == about["sampling"]["compile"]
    model.configure_sampling(compile=False)  # the same showers (test_diffusion); compiling costs half a minute
    assert all(p.dtype == torch.float32 for p in model.parameters())
    detector = get_detector(about["geometry"])
    energies = np.geomspace(2e3, 5e5, 8).repeat(20)[:, None]  # MeV, inside the 1 GeV - 1 TeV training range
    showers = model.sample(energies, batch_size=200, precision="fp32", seed=3)
    assert showers.shape == (len(energies), detector.geometry.n_voxels)
    assert np.isfinite(showers).all() and (showers >= 0).all()
    # the deposited fraction of the incident energy is what the simulator gives, within 10%
    simulated = ShowerSimulator(detector).simulate(energies[:, 0], np.random.default_rng(3))
    ratio = showers.sum(1) / energies[:, 0]
    expected = simulated.sum(1) / energies[:, 0]
    for e in np.unique(energies):
        at = energies[:, 0] == e
        assert np.median(ratio[at]) == pytest.approx(np.median(expected[at]), rel=0.1), e


def test_compact_checkpoint_rounds_weights_not_preprocessing(tiny_geometry) -> None:
    model = build_surrogate("vae", tiny_geometry)
    model.fit_preprocessing(torch.rand(64, 36) * 100, torch.full((64, 1), 1e4))
    checkpoint = compact_checkpoint(model)
    parameters = {name for name, _ in model.named_parameters()}
    for key, value in checkpoint["state_dict"].items():
        if value.is_floating_point():
            assert value.dtype == (torch.bfloat16 if key in parameters else torch.float32), key
    restored = surrogate_from_checkpoint(checkpoint)
    for (key, before), after in zip(model.state_dict().items(), restored.state_dict().values(), strict=True):
        assert after.dtype == before.dtype, key
        # bf16 keeps 8 bits of mantissa: a relative rounding of at most 2^-8
        assert torch.allclose(after.float(), before.float(), rtol=2**-8, atol=0), key


def test_an_unknown_name_says_what_is_shipped() -> None:
    with pytest.raises(CheckpointError, match=r"no shipped model named 'nope'.*ds2-diffusion"):
        load_pretrained("nope")


def test_the_shipped_diffusion_model_carries_its_posterior_variance() -> None:
    """analytic-ddpm works on the shipped weights out of the box: the table is measured and grows
    from about sigma^2 at low noise to the codes' spread at high noise."""
    model = load_pretrained("ds2-diffusion")
    table = model.posterior_variance
    assert bool(table.calibrated)
    assert 0 < float(table(0.01).mean()) < 1e-4 < float(table(1.0).mean()) < float(table(50.0).mean())
    model.configure_sampling(sampler="analytic-ddpm", steps=8, compile=False)
    showers = model.sample(np.geomspace(2e3, 5e5, 20)[:, None], batch_size=20, precision="fp32", seed=1)
    assert np.isfinite(showers).all() and (showers >= 0).all() and bool((showers.sum(1) > 0).all())
