"""One contract every registered surrogate family must keep (after zuko's parametrized model tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calosurrogate.data import read_showers
from calosurrogate.models import REGISTRY, build_surrogate, load_surrogate
from calosurrogate.training import TrainConfig, train

# Every family, plus each variant of a family that changes its architecture.
VARIANTS = [(name, {}) for name in sorted(REGISTRY)] + [
    ("flow", {"shape_flow": "per_layer"}),
    ("flow", {"shape_flow": "autoregressive", "energy_flow": "autoregressive"}),
    ("flow", {"shape_flow": "coupling", "shape_bins": 0}),
    ("vae", {"prior": "flow"}),
    ("vae", {"reconstruction": "mse"}),
    ("vae", {"architecture": "conv", "conv_channels": 4}),
    ("vae", {"layer_energies": True, "occupancy": True}),
    ("qvae", {"layout": "four-partite"}),
    ("qvae", {"layer_energies": True}),
    ("diffusion", {"objective": {"name": "ddpm"}}),
    ("diffusion", {"first_stage": {"layer_energies": True}}),
    ("diffusion", {"first_stage": {"layer_energies": True}, "code_scale": "hits"}),
    ("diffusion", {"objective": {"name": "flow-matching"}}),
    (
        "diffusion",
        {
            "objective": {"name": "spike-slab"},
            "first_stage": {"layer_energies": True, "occupancy": True, "library": True},
            "code_scale": "hits",
            "sampling": {"sampler": "ddpm"},
        },
    ),
    (
        "diffusion",
        {
            "backbone": {"name": "transformer", "transformer_dim": 16, "transformer_depth": 1},
            "objective": {"name": "flow-matching"},
        },
    ),
    ("diffusion", {"objective": {"name": "v"}, "sampling": {"sampler": "ddpm"}}),
    ("diffusion", {"objective": {"name": "flow-matching"}, "sampling": {"sampler": "rk4"}}),
    ("diffusion", {"backbone": {"name": "unet", "unet_channels": (4, 8)}, "sampling": {"sampler": "dpm2m"}}),
    ("diffusion", {"backbone": {"name": "unet", "unet_channels": (4, 8), "unet_attention": True}}),
]
SMALL = {"flow": {"energy_hidden": 32, "shape_hidden": 32, "shape_transforms": 2, "energy_transforms": 2},
         "inn": {"hidden": 32, "transforms": 2}, "paraflow": {"hidden": 32, "transforms": 2, "bins": 4}, "vae": {"hidden": 32, "latent": 4},
         "diffusion": {"backbone": {"hidden": 32, "blocks": 2}, "sampling": {"steps": 16}},
         "qvae": {"hidden": 32, "units_per_partition": 4, "pcd_chains": 64, "sampler_sweeps": 20},
         "wgan": {"hidden": 64, "critic_hidden": 64, "latent": 8}}  # fmt: skip
# Adversarial training needs more steps than likelihood training to follow its conditions.
TRAIN = {"wgan": {"epochs": 25, "learning_rate": 3e-4}, "diffusion": {"epochs": 15}}
IDS = [f"{n}-{next(iter(o.values()), 'default')}" for n, o in VARIANTS]


@pytest.fixture(scope="module", params=VARIANTS, ids=IDS)
def trained(request, tiny_geometry, tiny_file, tmp_path_factory):
    name, overrides = request.param
    model = build_surrogate(name, tiny_geometry, {**SMALL[name], **overrides}, ("incident_energies", "incident_angles"))
    run = tmp_path_factory.mktemp(f"run-{name}")
    settings = {"epochs": 3, "learning_rate": 3e-3, **TRAIN.get(name, {})}
    config = TrainConfig(batch_size=100, device="cpu", seed=1, **settings)
    result = train(model, tiny_file, run, config, progress=False)
    return load_surrogate(result.model_path), result


def _batch(tiny_file, n=64):
    batch = read_showers(tiny_file, conditions=["incident_angles"], max_showers=n)
    conds = np.concatenate([batch.incident_energies, batch.conditions["incident_angles"]], axis=1)
    return torch.tensor(batch.showers, dtype=torch.float32), torch.tensor(conds, dtype=torch.float32)


def test_loss_shape_and_gradients_reach_every_parameter(trained, tiny_file) -> None:
    model, _ = trained
    showers, conds = _batch(tiny_file)
    model.train()
    loss = model.loss(showers + 0.01, conds)
    assert loss.shape == (64,) and torch.isfinite(loss).all()
    model.zero_grad()
    loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum() > 0) for p in model.parameters()) == len(list(model.parameters()))


def test_an_exact_likelihood_is_finite_and_differentiable_in_the_conditions(trained, tiny_file) -> None:
    """What calo infer relies on, for the families that offer it."""
    model, _ = trained
    if not hasattr(model, "log_likelihood"):
        pytest.skip(f"{model.family} has no exact likelihood")
    showers, conds = _batch(tiny_file)
    conds.requires_grad_(True)
    value = model.log_likelihood(showers, conds)
    assert value.shape == (len(showers),) and torch.isfinite(value).all()
    value.sum().backward()
    assert conds.grad is not None and torch.isfinite(conds.grad).all() and conds.grad[:, 1].abs().sum() > 0


def test_training_lowers_the_loss(trained) -> None:
    model, result = trained
    assert np.isfinite(result.best_val_loss)
    if model.adversarial:
        # A critic's Wasserstein estimate is not a loss that falls; it must stay finite and positive
        # (the critic tells real from generated showers), with the penalty and spread logged.
        assert all(np.isfinite(row["train_loss"]) for row in result.history)
        assert {"train_gradient_penalty", "train_spread_ratio"} <= set(result.history[-1])
        assert result.history[-1]["train_spread_ratio"] > 0.01  # generated showers are not all one
    else:
        assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_sample_shapes_units_and_cut(trained, tiny_file, tiny_geometry) -> None:
    model, _ = trained
    _, conds = _batch(tiny_file, 200)
    showers = model.sample(conds.numpy(), batch_size=64, seed=0)
    assert showers.shape == (200, tiny_geometry.n_voxels) and showers.dtype == np.float32
    assert np.isfinite(showers).all() and showers.min() >= 0
    nonzero = showers[showers > 0]
    assert nonzero.size == 0 or nonzero.min() >= model.energy_cut_mev()


def test_save_load_gives_identical_samples(trained, tiny_file, tmp_path) -> None:
    model, _ = trained
    _, conds = _batch(tiny_file, 50)
    path = model.save(tmp_path / "m.pt")
    reloaded = load_surrogate(path)
    a = model.sample(conds.numpy(), seed=123)
    b = reloaded.sample(conds.numpy(), seed=123)
    np.testing.assert_array_equal(a, b)
    assert reloaded.condition_names == ("incident_energies", "incident_angles")
    raw = torch.load(path, weights_only=True)  # plain tensors and builtins: no code in the file
    assert raw["family"] == model.family and raw["config"] == model.checkpoint_dict()["config"]


def test_samples_follow_their_conditions(trained) -> None:
    model, _ = trained
    low = np.column_stack([np.full(300, 2e3), np.full(300, 0.1)])
    high = np.column_stack([np.full(300, 60e3), np.full(300, 0.1)])
    e_low = model.sample(low, seed=1).sum(1).mean()
    e_high = model.sample(high, seed=1).sum(1).mean()
    assert e_high > 5 * e_low
    assert 0.2 < e_high / 60e3 < 2.0


def test_bf16_sampling_close_to_fp32(trained) -> None:
    model, _ = trained
    conds = np.column_stack([np.full(200, 20e3), np.full(200, 0.1)])
    fp32 = model.sample(conds, seed=5, precision="fp32").sum(1).mean()
    bf16 = model.sample(conds, seed=5, precision="bf16").sum(1).mean()
    assert np.isfinite(bf16) and abs(bf16 / fp32 - 1) < 0.3
